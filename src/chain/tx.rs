//! MultiversX transactions, natively: the bytes that are signed, the signature, and the
//! body sent to `/transaction/send`, reproducing the reference SDK byte for byte.

use base64::Engine as _;
use serde::Serialize;

use crate::crypto::keys::{Address, Wallet};

/// Transaction version the chain expects.
pub const VERSION: u32 = 2;

/// A u64 contract argument: minimal big-endian bytes as lowercase hex (0 is empty).
pub fn u64_arg(n: u64) -> String {
    let bytes = n.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    hex::encode(&bytes[first..])
}

/// `billEpoch@<agent hex>@<epoch hex>@<windows hex>`.
pub fn bill_epoch_data(agent: &Address, epoch: u64, windows: u64) -> String {
    format!(
        "billEpoch@{}@{}@{}",
        agent.to_hex(),
        u64_arg(epoch),
        u64_arg(windows)
    )
}

/// `withdrawOwner@<amount hex>[@<to hex>]`: the escrow's owner takes `amount` atto-CLAW of
/// its claimable, to itself or to `to`. (The spec names the endpoint, not its arguments:
/// every withdrawal is simulated first, so a contract that takes others refuses it
/// before anything is sent.)
pub fn withdraw_owner_data(amount: u128, to: Option<&Address>) -> String {
    let bytes = amount.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let mut data = format!("withdrawOwner@{}", hex::encode(&bytes[first..]));
    if let Some(to) = to {
        data.push('@');
        data.push_str(&to.to_hex());
    }
    data
}

/// `enforceEpoch@<agent hex>@<epoch hex>`: collects an unpaid bill from the agent's bond.
pub fn enforce_epoch_data(agent: &Address, epoch: u64) -> String {
    format!("enforceEpoch@{}@{}", agent.to_hex(), u64_arg(epoch))
}

/// The call data (`function@arg...`, decoded) and gas limit of a body sent to
/// `/transaction/send`.
pub fn call_of(body: &str) -> Option<(String, u64)> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let encoded = value.get("data")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    Some((
        String::from_utf8(bytes).ok()?,
        value.get("gasLimit")?.as_u64()?,
    ))
}

#[derive(Debug, Clone)]
pub struct Transaction {
    pub nonce: u64,
    pub receiver: Address,
    pub sender: Address,
    pub gas_price: u64,
    pub gas_limit: u64,
    pub data: String,
    pub chain_id: String,
}

/// The signed fields, in the chain's order; `data` and `options` are left out when empty.
#[derive(Serialize)]
struct SigningFields<'a> {
    nonce: u64,
    value: &'a str,
    receiver: String,
    sender: String,
    #[serde(rename = "gasPrice")]
    gas_price: u64,
    #[serde(rename = "gasLimit")]
    gas_limit: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(rename = "chainID")]
    chain_id: &'a str,
    version: u32,
}

/// The body of `/transaction/send`, in the field order of the reference SDK.
#[derive(Serialize)]
struct SendBody<'a> {
    nonce: u64,
    value: &'a str,
    receiver: String,
    sender: String,
    #[serde(rename = "senderUsername")]
    sender_username: &'a str,
    #[serde(rename = "receiverUsername")]
    receiver_username: &'a str,
    #[serde(rename = "gasPrice")]
    gas_price: u64,
    #[serde(rename = "gasLimit")]
    gas_limit: u64,
    data: String,
    #[serde(rename = "chainID")]
    chain_id: &'a str,
    version: u32,
    options: u32,
    guardian: &'a str,
    signature: String,
    #[serde(rename = "guardianSignature")]
    guardian_signature: &'a str,
    relayer: &'a str,
    #[serde(rename = "relayerSignature")]
    relayer_signature: &'a str,
}

impl Transaction {
    fn data_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.data.as_bytes())
    }

    /// The compact JSON that is signed.
    pub fn bytes_for_signing(&self) -> Vec<u8> {
        let fields = SigningFields {
            nonce: self.nonce,
            value: "0",
            receiver: self.receiver.to_bech32(),
            sender: self.sender.to_bech32(),
            gas_price: self.gas_price,
            gas_limit: self.gas_limit,
            data: (!self.data.is_empty()).then(|| self.data_base64()),
            chain_id: &self.chain_id,
            version: VERSION,
        };
        serde_json::to_vec(&fields).expect("plain fields serialize")
    }

    /// Signs with the operator's key and returns the body to send (what is stored before
    /// sending, so a re-send is the identical bytes).
    pub fn sign(&self, wallet: &Wallet) -> String {
        let signature = wallet.sign(&self.bytes_for_signing());
        self.body(hex::encode(signature))
    }

    /// The body without a signature, for `/transaction/cost` (which needs none).
    pub fn unsigned(&self) -> String {
        self.body(String::new())
    }

    fn body(&self, signature: String) -> String {
        let body = SendBody {
            nonce: self.nonce,
            value: "0",
            receiver: self.receiver.to_bech32(),
            sender: self.sender.to_bech32(),
            sender_username: "",
            receiver_username: "",
            gas_price: self.gas_price,
            gas_limit: self.gas_limit,
            data: self.data_base64(),
            chain_id: &self.chain_id,
            version: VERSION,
            options: 0,
            guardian: "",
            signature,
            guardian_signature: "",
            relayer: "",
            relayer_signature: "",
        };
        serde_json::to_string(&body).expect("plain fields serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{data_dir, vectors, wallet_path};

    /// The keys of a compact JSON object in written order (values hold no `":`).
    fn keys_in_order(json: &str) -> Vec<String> {
        json.split("\":")
            .filter_map(|part| part.rsplit('"').next())
            .filter(|k| !k.is_empty() && !k.contains('}'))
            .map(str::to_string)
            .collect()
    }

    fn reference_send_body_order() -> Vec<String> {
        let raw = std::fs::read_to_string(data_dir().join("claws-vectors.json")).unwrap();
        let start = raw.find("\"send_body_json\"").unwrap();
        let block = &raw[start..start + raw[start..].find('}').unwrap()];
        block
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().strip_prefix('"').and_then(|l| l.split('"').next()))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn u64_arguments_match_the_vectors() {
        let v = vectors();
        for (n, hex) in v["u64_argument_encoding"].as_object().unwrap() {
            assert_eq!(u64_arg(n.parse().unwrap()), hex.as_str().unwrap(), "{n}");
        }
    }

    #[test]
    fn bill_epoch_transactions_match_the_vectors_byte_for_byte() {
        let v = vectors();
        let cases = v["bill_epoch_transactions"].as_array().unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let wallet =
                Wallet::from_pem_file(&wallet_path(case["operator_pem"].as_str().unwrap()))
                    .unwrap();
            let agent = Address::parse(case["agent"].as_str().unwrap()).unwrap();
            let data = bill_epoch_data(
                &agent,
                case["epoch"].as_u64().unwrap(),
                case["windows"].as_u64().unwrap(),
            );
            assert_eq!(data, case["data_utf8"].as_str().unwrap());
            let tx = Transaction {
                nonce: case["nonce"].as_u64().unwrap(),
                receiver: Address::parse(case["receiver"].as_str().unwrap()).unwrap(),
                sender: wallet.address(),
                gas_price: case["gas_price"].as_u64().unwrap(),
                gas_limit: case["gas_limit"].as_u64().unwrap(),
                data,
                chain_id: case["chain_id"].as_str().unwrap().to_string(),
            };
            assert_eq!(
                String::from_utf8(tx.bytes_for_signing()).unwrap(),
                case["bytes_for_signing_utf8"].as_str().unwrap()
            );
            let body = tx.sign(&wallet);
            let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(sent, case["send_body_json"]);
            assert_eq!(sent["signature"], case["signature_hex"]);
            // Field order as in the reference file (serde_json::Value forgets it).
            assert_eq!(keys_in_order(&body), reference_send_body_order());
        }
    }
}
