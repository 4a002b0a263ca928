//! Validation carved from the training recordings, by a rule that keeps related recordings
//! together.
//!
//! Rule: recordings are grouped by their name up to the first `-` or `_` (PKU-MMD `0005-L`,
//! `0005-M`, `0005-R` are three views of one performance: group `0005`; UTKinect `s03_e01` is
//! subject `s03`); when that leaves a single group, every recording is its own group. Groups are
//! sorted by name and every k-th one, starting at the middle of the first k, goes to validation,
//! with `k = round(1 / fraction)`; at least one group is held out and at least one kept. So no
//! performance (or subject) is seen from one side in training and from another in validation.
//!
//! The default fraction ([`default_val_fraction`]) is 0.2 for folders of fewer than 100 training
//! recordings and 0.1 above: in a tiny folder a tenth is two or three recordings, too few to tell
//! one epoch's checkpoint from another's.

/// Recordings below which [`default_val_fraction`] carves a fifth instead of a tenth.
pub const SMALL_FOLDER: usize = 100;

/// Share of the groups carved for validation by default: 0.2 below [`SMALL_FOLDER`] training
/// recordings, else 0.1.
pub fn default_val_fraction(recordings: usize) -> f64 {
    if recordings < SMALL_FOLDER { 0.2 } else { 0.1 }
}

/// Group key of a recording name (see the module docs).
pub fn group_of(name: &str) -> &str {
    name.split(['-', '_']).next().unwrap_or(name)
}

/// Splits `names` into (train, validation) by the module's rule; `fraction` of the groups (about)
/// go to validation. Fewer than two recordings: everything trains, nothing validates.
pub fn carve_validation<'a>(names: &[&'a str], fraction: f64) -> (Vec<&'a str>, Vec<&'a str>) {
    if names.len() < 2 || fraction <= 0.0 {
        return (names.to_vec(), Vec::new());
    }
    let mut groups: Vec<&str> = names.iter().map(|n| group_of(n)).collect();
    groups.sort_unstable();
    groups.dedup();
    let by_name = groups.len() < 2;
    let key = |n: &'a str| if by_name { n } else { group_of(n) };
    if by_name {
        groups = names.to_vec();
        groups.sort_unstable();
    }
    let k = ((1.0 / fraction).round() as usize).clamp(2, groups.len());
    let held: Vec<&str> = groups.iter().skip(k / 2).step_by(k).copied().collect();
    names.iter().partition(|n| !held.contains(&key(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_of_one_performance_stay_together() {
        let names: Vec<String> =
            (1..=20).flat_map(|s| ["L", "M", "R"].map(|v| format!("{s:04}-{v}"))).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (train, val) = carve_validation(&names, 0.1);
        assert_eq!(val, ["0006-L", "0006-M", "0006-R", "0016-L", "0016-M", "0016-R"]);
        assert_eq!(train.len() + val.len(), names.len());
        assert!(train.iter().all(|t| !val.iter().any(|v| group_of(v) == group_of(t))));
    }

    #[test]
    fn tiny_folders_carve_a_fifth() {
        assert_eq!(default_val_fraction(28), 0.2);
        assert_eq!(default_val_fraction(99), 0.2);
        assert_eq!(default_val_fraction(100), 0.1);
        // 28 recordings in one group: 6 validate (3 with a tenth).
        let names: Vec<String> = (0..28).map(|i| format!("take{i:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (_, val) = carve_validation(&names, default_val_fraction(names.len()));
        assert_eq!(val.len(), 6);
        assert_eq!(carve_validation(&names, 0.1).1.len(), 3);
    }

    #[test]
    fn a_single_group_splits_by_recording_and_tiny_sets_all_train() {
        let names: Vec<String> = (0..10).map(|i| format!("synth_{i:04}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (train, val) = carve_validation(&names, 0.2);
        assert_eq!(val, ["synth_0002", "synth_0007"]);
        assert_eq!(train.len(), 8);
        assert_eq!(carve_validation(&["a_1"], 0.2), (vec!["a_1"], vec![]));
    }
}
