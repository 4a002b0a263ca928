//! Shared pieces of the line-based text readers: reading a file as UTF-8, numbered lines, and
//! number parsing that reports `path:line: expected ..., found ...`.

use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Location, Result};

/// Reads `path` as UTF-8 text; a file that is not UTF-8 is a located parse error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| not_utf8(path, e.as_bytes(), e.utf8_error().valid_up_to()))
}

/// [`read_text`] on bytes already in memory (read from `path`, named in errors).
#[cfg(feature = "synth")] // only the fuzz targets, which come with `synth`, read from memory
pub(crate) fn text_of<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| not_utf8(path, bytes, e.valid_up_to()))
}

fn not_utf8(path: &Path, bytes: &[u8], valid: usize) -> Error {
    let line = bytes[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
    At::new(path, line).expected("UTF-8 text", "invalid bytes")
}

/// The error for a file without any data.
pub(crate) fn empty_file(path: &Path, expected: &str) -> Error {
    Error::parse(Location::file(path), expected, "an empty file")
}

/// Lines numbered from 1, without their line ending.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
}

/// A place in a text file, for errors.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    path: &'a Path,
    line: usize,
}

impl<'a> At<'a> {
    pub(crate) fn new(path: &'a Path, line: usize) -> Self {
        At { path, line }
    }

    /// `path:line`.
    pub(crate) fn location(&self) -> Location {
        Location::file_line(self.path, self.line as u64)
    }

    /// A parse error here: what was expected, what was found.
    pub(crate) fn expected(&self, expected: impl Into<String>, found: impl Into<String>) -> Error {
        Error::parse(self.location(), expected, found)
    }

    /// A parse error at `item` of this line (`frame 3, body 1`).
    pub(crate) fn err_in(
        &self,
        item: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Error {
        Error::parse(self.location().with_item(item), expected, found)
    }

    /// A finite `f32`; `what` names the value in the error (`x of joint 3`).
    pub(crate) fn finite_f32(&self, token: &str, what: impl Display) -> Result<f32> {
        match token.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(_) => {
                Err(self.expected(format!("a finite number for {what}"), format!("`{token}`")))
            }
            Err(_) => Err(self.expected(format!("a number for {what}"), format!("`{token}`"))),
        }
    }

    /// Any number (NaN and infinities allowed) for fields that are checked but not used.
    pub(crate) fn number(&self, token: &str, what: impl Display) -> Result<f64> {
        token
            .parse::<f64>()
            .map_err(|_| self.expected(format!("a number for {what}"), format!("`{token}`")))
    }

    /// An integer of type `T` (`usize`, `u64`, ...).
    pub(crate) fn integer<T: FromStr>(&self, token: &str, what: impl Display) -> Result<T> {
        token
            .parse::<T>()
            .map_err(|_| self.expected(format!("an integer for {what}"), format!("`{token}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_and_located() {
        let at = At::new(Path::new("f.txt"), 7);
        assert_eq!(at.finite_f32("-0.25", "x").unwrap(), -0.25);
        let nan = at.finite_f32("NaN", "x of joint 3").unwrap_err().to_string();
        assert_eq!(nan, "f.txt:7: expected a finite number for x of joint 3, found `NaN`");
        let inf = at.finite_f32("inf", "y").unwrap_err().to_string();
        assert!(inf.contains("finite") && inf.contains("`inf`"), "{inf}");
        let word = at.finite_f32("abc", "z").unwrap_err().to_string();
        assert_eq!(word, "f.txt:7: expected a number for z, found `abc`");
        assert_eq!(at.integer::<u64>("12", "n").unwrap(), 12);
        assert!(at.integer::<usize>("-1", "n").is_err());
    }

    #[test]
    fn crlf_line_endings_are_stripped() {
        let lines: Vec<_> = numbered_lines("a\r\nb\n").collect();
        assert_eq!(lines, [(1, "a"), (2, "b")]);
    }
}
