//! Integrity: every stored event carries a checksum; a damaged data file
//! never serves wrong data, reads name the damage, and `cascade verify`
//! finds it. Bytes are flipped in copies of a real data file.

use std::path::Path;

use cascade_tests::{TestHost, cascade_process, plugins};

/// A data directory with 40 users and their accounts, closed.
fn real_data() -> tempfile::TempDir {
    let TestHost { dir, mut runtime } = TestHost::with(&[
        plugins::USERS,
        plugins::ACCOUNTS,
        plugins::WELCOME,
        plugins::USER_COUNTER,
    ]);
    for i in 0..40 {
        let args = format!(r#"{{"name":"user-{i:03}"}}"#);
        let settled = runtime
            .pipeline()
            .execute(cascade::Command::new("users", &format!("u{i}"), "create", &args))
            .unwrap();
        assert!(settled.is_ok());
    }
    drop(runtime);
    dir
}

fn copy_with_flip(from: &Path, offset: usize, bit: u8) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(from.join(cascade::DATA_FILE)).unwrap();
    bytes[offset] ^= 1 << bit;
    std::fs::write(to.path().join(cascade::DATA_FILE), bytes).unwrap();
    to
}

fn offsets_of(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn a_changed_event_is_never_served_and_verify_names_it() {
    let data = real_data();
    let (status, clean, _) = cascade_process(data.path(), &["verify"]);
    assert_eq!(status, 0, "{clean}");
    assert!(
        clean.contains(
            "verified 80 event(s), 80 stream(s), 2 checkpoint(s), 1 state blob(s), 4 artifact(s): no problem found"
        ),
        "{clean}"
    );

    // user-017 → user-817 inside the stored event.
    let file = std::fs::read(data.path().join(cascade::DATA_FILE)).unwrap();
    let offsets = offsets_of(&file, b"user-017");
    assert_eq!(offsets.len(), 1, "the name is stored once");
    let damaged = copy_with_flip(data.path(), offsets[0] + 5, 3);

    let (status, out, err) = cascade_process(damaged.path(), &["events", "--json"]);
    assert_eq!(status, 4, "{err}");
    assert!(!out.contains("user-817"), "the changed event is not served");
    assert!(
        err.starts_with("cascade: event #") && err.contains("in table `events` fails its checksum"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let (status, report, _) = cascade_process(damaged.path(), &["verify"]);
    assert_eq!(status, 4);
    let position = err["cascade: event #".len()..].split_whitespace().next().unwrap();
    assert!(
        report.contains(&format!("event #{position} in table `events` fails its checksum")),
        "{report}"
    );
    assert!(report.ends_with("1 problem(s)\n"), "{report}");

    // Reading left it no worse: the same report again, the other streams served.
    let (_, again, _) = cascade_process(damaged.path(), &["verify"]);
    assert_eq!(again, report);
    let (status, out, _) = cascade_process(damaged.path(), &["events", "--stream", "users:u3", "--json"]);
    assert_eq!(status, 0);
    assert!(out.contains("user-003"), "{out}");
}

#[test]
fn any_flipped_bit_in_the_log_pages_gives_correct_data_or_a_named_error() {
    let data = real_data();
    let (_, expected, _) = cascade_process(data.path(), &["events", "--json"]);
    let file = std::fs::read(data.path().join(cascade::DATA_FILE)).unwrap();
    // Pages that hold event payloads, non-zero bytes only (the rest is free).
    let pages: std::collections::BTreeSet<usize> = offsets_of(&file, b"user-").iter().map(|o| o / 4096).collect();
    let candidates: Vec<usize> = pages
        .iter()
        .flat_map(|p| p * 4096..((p + 1) * 4096).min(file.len()))
        .filter(|&o| file[o] != 0)
        .collect();
    let mut outcomes = std::collections::BTreeMap::new();
    // A fixed, spread sample: the test is the same every run.
    for k in 0..40usize {
        let offset = candidates[k * candidates.len() / 40];
        let damaged = copy_with_flip(data.path(), offset, (k % 8) as u8);
        let (status, out, err) = cascade_process(damaged.path(), &["events", "--json"]);
        let (verified, report, _) = cascade_process(damaged.path(), &["verify"]);
        match status {
            0 => assert_eq!(out, expected, "flip at {offset}: served different data"),
            4 => {
                assert!(
                    err.starts_with("cascade: ") && err.lines().count() == 1,
                    "flip at {offset}: {err}"
                );
                assert_eq!(
                    verified, 4,
                    "flip at {offset}: events failed ({err}) but verify passed: {report}"
                );
            }
            other => panic!("flip at {offset}: exit {other}: {err}"),
        }
        *outcomes.entry((status, verified)).or_insert(0) += 1;
    }
    // The sample hits events: most flips are caught, none served wrong.
    assert!(outcomes.get(&(4, 4)).copied().unwrap_or(0) >= 10, "{outcomes:?}");
}
