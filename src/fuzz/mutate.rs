//! Byte-level mutations of parser inputs: what a corrupted file, a truncated transfer or a hostile
//! peer produces. Each call applies one to four of them, chosen by a seeded RNG, so a campaign is
//! reproducible from its seed.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Longest input a mutation grows to; larger inputs only cost time, not coverage.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// Numbers that break naive parsers: overflow, NaN/Inf spellings, signs, exponents.
const NASTY_NUMBERS: &[&str] = &[
    "NaN",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    "1e309",
    "-1e309",
    "1e-400",
    "0",
    "-0",
    "-1",
    "1",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "340282366920938463463374607431768211456",
    "3.4028236e38",
    "1.7976931348623157e308",
    "0x10",
    "1_000",
    "+5",
    "",
    "1.",
    ".5",
    "1e",
    "--1",
];

/// Bytes that carry structure in the formats skelseg reads.
const STRUCTURE_BYTES: &[u8] =
    b"\n\r\t ,:;.-+e0159{}[]\"\\/#\0abcNSsfid\x7f\x80\xbf\xc3\xe2\xf0\xff";

fn interesting_u32() -> [u32; 10] {
    [0, 1, 4, 8, 20, 0x7fff_ffff, 0x8000_0000, 0xffff_fff0, 0xffff_ffff, 65536]
}

/// Mutates `input` in place with 1–4 random mutations; `other` is another corpus entry for
/// splicing.
pub fn mutate(rng: &mut ChaCha8Rng, input: &mut Vec<u8>, other: &[u8]) {
    let rounds = rng.gen_range(1..=4);
    for _ in 0..rounds {
        mutate_once(rng, input, other);
    }
    input.truncate(MAX_INPUT_BYTES);
}

fn mutate_once(rng: &mut ChaCha8Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.gen_range(0..15) {
        // Bit flip.
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] ^= 1 << rng.gen_range(0..8);
        }
        // A byte that means something to a parser.
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] = *STRUCTURE_BYTES.choose(rng).unwrap_or(&b'\n');
        }
        // Random byte.
        2 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] = rng.r#gen();
        }
        // Truncation (a cut transfer).
        3 if len > 0 => input.truncate(rng.gen_range(0..len)),
        // Delete a range.
        4 if len > 0 => {
            let start = rng.gen_range(0..len);
            let end = (start + rng.gen_range(1..=64)).min(len);
            input.drain(start..end);
        }
        // Duplicate a range (repeated lines, repeated joints).
        5 if len > 0 => {
            let start = rng.gen_range(0..len);
            let end = (start + rng.gen_range(1..=512)).min(len);
            let copy = input[start..end].to_vec();
            let at = rng.gen_range(0..=len);
            input.splice(at..at, copy);
        }
        // Splice: a prefix of this input and a suffix of another.
        6 if !other.is_empty() => {
            let cut = rng.gen_range(0..=len);
            let from = rng.gen_range(0..other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        // A number token replaced by a nasty one.
        7 => replace_number(rng, input),
        // An overlong line: mostly 1 KB (long for a line, cheap to parse), rarely past the live
        // decoders' line limits (16 KiB in the `ndjson-live` target, 64 KiB on sockets), which
        // only a few inputs need to reach; every input made huge would cost time, not coverage.
        8 => {
            let n = match rng.gen_range(0..16) {
                0 => 70_000,
                1 => 20_000,
                _ => 1000,
            };
            let byte = *b"9 a,{[".choose(rng).unwrap_or(&b'9');
            let at = rng.gen_range(0..=len);
            input.splice(at..at, std::iter::repeat_n(byte, n));
        }
        // A big-endian u32 (OSC sizes, safetensors lengths) overwritten.
        9 if len >= 4 => {
            let i = rng.gen_range(0..=len - 4);
            let v = *interesting_u32().choose(rng).unwrap_or(&0);
            let bytes = if rng.gen_bool(0.5) { v.to_be_bytes() } else { v.to_le_bytes() };
            input[i..i + 4].copy_from_slice(&bytes);
        }
        // A u64 little-endian length prefix (safetensors) replaced.
        10 if len >= 8 => {
            let v: u64 = *[0, 1, 2, len as u64, u64::MAX, 1 << 40, (len as u64).saturating_sub(9)]
                .choose(rng)
                .unwrap_or(&0);
            input[..8].copy_from_slice(&v.to_le_bytes());
        }
        // Swap two lines.
        11 => swap_lines(rng, input),
        // Random bytes of random length (arbitrary input).
        12 => {
            let n = rng.gen_range(0..256);
            input.clear();
            input.extend((0..n).map(|_| rng.r#gen::<u8>()));
        }
        // Insert a few structural bytes.
        13 => {
            let at = rng.gen_range(0..=len);
            let n = rng.gen_range(1..8);
            let bytes: Vec<u8> =
                (0..n).map(|_| *STRUCTURE_BYTES.choose(rng).unwrap_or(&b' ')).collect();
            input.splice(at..at, bytes);
        }
        // Empty the input.
        _ if rng.gen_bool(0.05) => input.clear(),
        _ => replace_number(rng, input),
    }
}

/// Replaces one run of number characters with a nasty number.
fn replace_number(rng: &mut ChaCha8Rng, input: &mut Vec<u8>) {
    let is_num = |b: u8| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E');
    // One run chosen uniformly: count the runs, then find the chosen one (no list of them).
    let is_start = |i: usize| is_num(input[i]) && (i == 0 || !is_num(input[i - 1]));
    let runs = (0..input.len()).filter(|&i| is_start(i)).count();
    let chosen = (runs > 0)
        .then(|| rng.gen_range(0..runs))
        .and_then(|k| (0..input.len()).filter(|&i| is_start(i)).nth(k));
    let nasty = NASTY_NUMBERS.choose(rng).unwrap_or(&"NaN").as_bytes();
    let Some(start) = chosen else {
        let at = rng.gen_range(0..=input.len());
        input.splice(at..at, nasty.iter().copied());
        return;
    };
    let end = (start..input.len()).find(|&i| !is_num(input[i])).unwrap_or(input.len());
    input.splice(start..end, nasty.iter().copied());
}

fn swap_lines(rng: &mut ChaCha8Rng, input: &mut Vec<u8>) {
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if lines.len() < 2 {
        return;
    }
    let a = rng.gen_range(0..lines.len());
    let b = rng.gen_range(0..lines.len());
    lines.swap(a, b);
    *input = lines.join(&b'\n');
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn mutations_are_reproducible_from_the_seed_and_change_the_input() {
        let seed_input = b"1 2 3\n4.5 -6 7e3\n".to_vec();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..50)
                .map(|_| {
                    let mut x = seed_input.clone();
                    mutate(&mut rng, &mut x, b"other");
                    x
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let changed = run(7).iter().filter(|x| **x != seed_input).count();
        assert!(changed >= 45, "only {changed} of 50 mutated inputs differ");
    }

    #[test]
    fn nasty_numbers_replace_number_tokens() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut input = b"a 12 b".to_vec();
        replace_number(&mut rng, &mut input);
        let text = String::from_utf8_lossy(&input);
        assert!(text.starts_with("a ") && text.ends_with(" b"), "{text}");
        assert_ne!(text, "a 12 b");
    }
}
