//! A minimal HTTP/1.1 server for the fakes: keep-alive, Content-Length bodies, each answer
//! written in one write with TCP_NODELAY (no delayed-ACK stalls distorting timings).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use super::Action;

/// One request as the server read it.
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves `handler(method, path, body)` on an ephemeral 127.0.0.1 port; returns the base URL.
pub fn serve<F>(handler: F) -> String
where
    F: Fn(&str, &str, &str) -> Action + Send + Sync + 'static,
{
    serve_requests(move |r: &Request| handler(&r.method, &r.path, &r.body))
}

/// Serves `handler(request)`, headers included.
pub fn serve_requests<F>(handler: F) -> String
where
    F: Fn(&Request) -> Action + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handler = std::sync::Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let handler = handler.clone();
            std::thread::spawn(move || connection(stream, &*handler));
        }
    });
    url
}

fn connection(stream: TcpStream, handler: &dyn Fn(&Request) -> Action) {
    stream.set_nodelay(true).ok();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        // A request through a proxy names the whole URL (absolute form): its path is ours.
        let target = parts.next().unwrap_or("");
        let path = match target.split_once("://") {
            Some((_, rest)) => rest
                .find('/')
                .map_or("/".to_string(), |i| rest[i..].to_string()),
            None => target.to_string(),
        };
        let mut length = 0usize;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        match handler(&request) {
            Action::Close => return,
            Action::Answer(code, text, headers) => {
                let mut out = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    text.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&text);
                if writer.write_all(out.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}
