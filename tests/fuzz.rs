//! A short fuzz campaign over every parser inside the test suite (the long one is
//! `cargo run --release --example fuzz`, see RELIABILITY.md), and the inputs that once made a
//! parser panic, replayed.

use std::path::Path;

use skelseg::fuzz::{self, Outcome, TARGETS, TargetRun};

/// Inputs per target: 75,000 in all, about two seconds on the loaded 2-core machine.
const INPUTS_PER_TARGET: u64 = 5_000;

#[test]
fn every_parser_survives_mutated_inputs() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut failures = Vec::new();
    for target in TARGETS {
        let corpus = fuzz::corpus(target, &fixtures);
        assert!(
            !corpus.is_empty(),
            "{}: no seed corpus in fixtures/fuzz/{}",
            target.name,
            target.name
        );
        let mut run = TargetRun::new(target, corpus, 0x5eed);
        run.run(INPUTS_PER_TARGET, None);
        let report = run.report();
        assert_eq!(report.inputs, INPUTS_PER_TARGET);
        // The corpus holds valid inputs: a target that accepts nothing is not testing its parser.
        assert!(report.accepted > 0, "{}: no input accepted", target.name);
        assert!(report.rejected > 0, "{}: no input rejected", target.name);
        if let Some(f) = &report.first_panic {
            failures
                .push(format!("{}: input {} panicked: {}", target.name, f.iteration, f.message));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_seed_is_accepted_as_committed() {
    // The committed corpus is valid input (else mutations start from rejected files); the
    // nested OSC bundles hold no body, so they give no frame.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fuzz");
    for target in TARGETS {
        for (name, bytes) in fuzz::seeds(target.name) {
            let on_disk =
                std::fs::read(fixtures.join(target.name).join(&name)).unwrap_or_else(|e| {
                    panic!("{}/{name}: {e} (run the fuzz example with --write-corpus)", target.name)
                });
            assert_eq!(on_disk, bytes, "{}/{name} differs from the generator", target.name);
            let outcome = fuzz::run_one(target, &bytes);
            let expected =
                if name.starts_with("nested-") { Outcome::Rejected } else { Outcome::Accepted };
            assert_eq!(outcome, Ok(expected), "{}/{name}", target.name);
        }
    }
}

#[test]
fn a_stack_deep_osc_bundle_is_a_counted_skip() {
    // ~3,000 nested bundles fit a 64 KiB datagram; decoding them recursively would overflow
    // the source thread's stack (an abort, not a catchable panic).
    let deep = fuzz::deep_bundle(3_000);
    assert!(deep.len() < 64 * 1024);
    let mut input = (deep.len() as u16).to_be_bytes().to_vec();
    input.extend_from_slice(&deep);
    let target = fuzz::target("osc").expect("osc target");
    assert_eq!(fuzz::run_one(target, &input), Ok(Outcome::Rejected));
}
