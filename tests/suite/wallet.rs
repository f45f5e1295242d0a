//! The money around the bills: the owner's cash-out (`withdraw`) and the operator's
//! wallet, read once an epoch, with its runway in `check` and the textfile.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::bill::{self, Bill, CAROL};
use crate::common::chain::{SendFault, BOB, CONTRACT};
use crate::common::*;

const CLAW: u128 = 1_000_000_000_000_000_000;

fn key(b: &Bill, name: &str) -> String {
    let pem = b.sb.dir.path().join(format!("{name}-owner.pem"));
    std::fs::copy(data_dir().join(format!("{name}.pem")), &pem).unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    pem.to_str().unwrap().to_string()
}

fn withdraw(b: &Bill, pem: &str, extra: &[&str]) -> Ran {
    let mut args = vec![
        "withdraw",
        "--escrow-contract",
        CONTRACT,
        "--billing-proxy",
        &b.fake.url,
        "--owner-pem",
        pem,
    ];
    args.extend_from_slice(extra);
    b.sb.run(&args)
}

#[test]
fn the_owner_withdraws_once_what_is_claimable_and_nobody_else_can() {
    let b = bill::setup(60_000, 60_000);
    b.fake.state().chain.claimable_owner = 10 * CLAW;
    let rows = || b.sb.query_i64("SELECT COUNT(*) FROM owner_withdrawals");
    let sends = || b.fake.state().chain.sends.len();

    // Not the owner's key, too much, nothing asked: one line each, nothing sent or written.
    let carol = key(&b, "carol");
    for (pem, extra, says) in [
        (&carol, vec!["--all"], "is not the escrow's owner"),
        (
            &key(&b, "bob"),
            vec!["--amount", "20"],
            "more than the owner's claimable",
        ),
        (&key(&b, "bob"), vec![], "give --all or --amount"),
        (
            &key(&b, "bob"),
            vec!["--amount", "1.2.3"],
            "not an amount of CLAW",
        ),
    ] {
        let r = withdraw(&b, pem, &extra);
        assert_eq!(r.code, 2, "{extra:?}: {}{}", r.stdout, r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
    assert_eq!((rows(), sends()), (0, 0));

    // The owner's: simulated, its fee shown, sent once, confirmed by the view.
    let bob = key(&b, "bob");
    let r = withdraw(&b, &bob, &["--amount", "4", "--to", CAROL]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("fee about"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("claimable is now 6.0000 CLAW (was 10.0000)"),
        "{}",
        r.stdout
    );
    {
        let s = b.fake.state();
        assert_eq!(
            s.chain.owner_withdrawals,
            vec![(CAROL.to_string(), 4 * CLAW)]
        );
        assert_eq!(s.chain.claimable_owner, 6 * CLAW);
    }
    assert_eq!(
        b.sb.query_i64("SELECT COUNT(*) FROM owner_withdrawals WHERE status = 'success'"),
        1
    );

    // A send whose answer is lost: the next run resolves it and sends nothing new.
    b.send_fault(SendFault::LostReply);
    let r = withdraw(&b, &bob, &["--all"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("run withdraw again"), "{}", r.stderr);
    let r = withdraw(&b, &bob, &["--all"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("sent by an earlier run"), "{}", r.stdout);
    {
        let s = b.fake.state();
        assert_eq!(
            s.chain.owner_withdrawals.len(),
            2,
            "{:?}",
            s.chain.owner_withdrawals
        );
        assert_eq!(s.chain.owner_withdrawals[1], (BOB.to_string(), 6 * CLAW));
        assert_eq!(s.chain.claimable_owner, 0);
    }
    // Nothing is left: refused before anything is sent.
    let before = sends();
    let r = withdraw(&b, &bob, &["--all"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nothing to withdraw"), "{}", r.stderr);
    assert_eq!(sends(), before);
}

#[test]
fn a_wallet_that_pays_few_epochs_of_bills_needs_a_human() {
    let b = bill::setup(1_200, 3_000);
    b.fake.state().chain.operator_balance = 1_000;
    let start = b.current_epoch();
    // Bills are sent and their fees read; an epoch's close records the balance.
    let recorded = wait_for(Duration::from_secs(60), || {
        b.tick();
        std::thread::sleep(Duration::from_millis(150));
        b.current_epoch() >= start + 3
            && b.sb.query_i64(
                "SELECT COUNT(*) FROM epoch_history WHERE operator_balance_atto IS NOT NULL",
            ) > 0
    });
    assert!(recorded, "no epoch recorded the wallet");
    let prom = b.sb.dir.path().join("m.prom");
    let r = b.sb.run(&[
        "check",
        "--min-balance-epochs",
        "3",
        "--prometheus",
        prom.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("the operator's wallet pays fewer than 3 epochs of bills"),
        "{}",
        r.stdout
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("stream_agency_operator_balance_milliclaw 0"),
        "{text}"
    );
    assert!(
        text.contains("stream_agency_operator_runway_epochs 0"),
        "{text}"
    );
    let r = b.sb.run(&["check", "--min-balance-epochs", "0"]);
    assert!(
        !r.stdout.contains("the operator's wallet pays"),
        "{}",
        r.stdout
    );
    // Topped up: recorded at the next epoch's close, and fine again.
    b.fake.state().chain.operator_balance = 1_000_000 * CLAW;
    let epoch = b.current_epoch();
    assert!(wait_for(Duration::from_secs(30), || {
        b.tick();
        std::thread::sleep(Duration::from_millis(150));
        b.sb.query_i64(&format!("SELECT COUNT(*) FROM epoch_history WHERE epoch >= {epoch} AND operator_balance_atto IS NOT NULL")) > 0
    }));
    let r = b.sb.run(&["check", "--min-balance-epochs", "3"]);
    assert!(
        !r.stdout.contains("the operator's wallet pays"),
        "{}",
        r.stdout
    );
}
