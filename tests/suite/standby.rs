//! When the host fails: a standby renews only while the primary is late and never bills;
//! `absorb` brings its windows into the primary's ledger once; a restored primary learns
//! every bill the chain has (`reconcile` from the escrow's last billed epoch); a host
//! clock that steps between renewals is noticed without asking anybody.

use std::time::Duration;

use crate::common;
use common::bill::{setup, ALICE};
use common::*;

#[test]
fn a_restored_backup_learns_every_bill_the_chain_has() {
    let b = setup(3_600_000, 2_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(ALICE, e - 2, 3);
    b.tick_until_settled();
    let backup = b.sb.dir.path().join("before.db");
    b.sb.ok(&["backup", "--to", backup.to_str().unwrap()]);
    // Two more bills after the backup, then the backup restored.
    let later = wait_for(Duration::from_secs(20), || b.current_epoch() > e);
    assert!(later);
    b.usage(ALICE, e - 1, 2);
    b.usage(ALICE, e, 4);
    b.tick_until_settled();
    assert_eq!(b.fake.state().chain.bills.len(), 3);
    b.sb.ok(&["restore", backup.to_str().unwrap()]);
    let billed = |b: &common::bill::Bill| {
        b.sb.query_i64(
            "SELECT COUNT(*) FROM usage_windows WHERE kind IN ('billed', 'billed-found-on-chain')",
        )
    };
    assert_eq!(billed(&b), 1, "the backup knows one bill");
    let r = b.reconcile(&[]);
    assert_eq!(r.code, 4, "two bills missing: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("no record"), "{}", r.stdout);
    let r = b.reconcile(&["--apply"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(billed(&b), 3, "every bill the chain has, known locally");
    let open = b.sb.ok(&["receivables", "--format", "json"]);
    let open: serde_json::Value = serde_json::from_str(&open).unwrap();
    assert_eq!(open.as_array().unwrap().len(), 3, "{open}");
    // Nothing billed twice: the next ticks send nothing.
    b.tick_until_settled();
    assert_eq!(b.fake.state().chain.executed.len(), 3);
    let r = b.reconcile(&[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
