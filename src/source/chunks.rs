//! Big line-oriented files in pieces. A log file is read whole when it is
//! small (nearly always: the Sparkify logs are one file per day). From
//! [`STREAM_FROM`] bytes on, ingest and reprocess read it in pieces that end
//! at a line break instead, so that memory stays bounded by the piece and
//! not by the file (read whole, a file took twice its size in memory).

use std::io::Read;

use sha2::{Digest, Sha256};

/// Log files of this size or more are read in pieces.
pub const STREAM_FROM: u64 = 64 << 20;

/// How many bytes one piece holds at most: some 35,000 Sparkify events.
pub const PIECE: usize = 16 << 20;

/// One piece of a file: whole lines, and the number of the first (from 1).
#[derive(Debug, PartialEq, Eq)]
pub struct Piece {
    pub first_line: u64,
    pub bytes: Vec<u8>,
}

/// Reads `reader` in [`Piece`]s of up to `size` bytes that end just after a
/// line break (the last one ends where the input does). A line longer than
/// `size` makes its piece longer. Made with [`LineChunks::hashing`], it
/// also hashes everything it reads ([`LineChunks::sha256`]).
pub struct LineChunks<R> {
    reader: R,
    size: usize,
    /// What was read past the last piece's final line break.
    carry: Vec<u8>,
    next_line: u64,
    hasher: Option<Sha256>,
    done: bool,
}

impl<R: Read> LineChunks<R> {
    pub fn new(reader: R, size: usize) -> Self {
        LineChunks { reader, size: size.max(1), carry: vec![], next_line: 1, hasher: None, done: false }
    }

    /// Pieces that are also hashed, for [`LineChunks::sha256`].
    pub fn hashing(reader: R, size: usize) -> Self {
        LineChunks { hasher: Some(Sha256::new()), ..Self::new(reader, size) }
    }

    /// The next piece, or `None` at the end of the input.
    pub fn next_piece(&mut self) -> std::io::Result<Option<Piece>> {
        if self.done {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.carry);
        // Where to look for the last line break: only in what this call read.
        let mut searched = 0;
        let end = loop {
            if self.fill(&mut buf)? {
                self.done = true;
                break buf.len();
            }
            if let Some(i) = buf[searched..].iter().rposition(|&b| b == b'\n') {
                break searched + i + 1;
            }
            searched = buf.len();
        };
        if end == 0 {
            return Ok(None);
        }
        self.carry = buf[end..].to_vec();
        buf.truncate(end);
        if let Some(h) = &mut self.hasher {
            h.update(&buf);
        }
        let piece = Piece { first_line: self.next_line, bytes: buf };
        self.next_line += piece.bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(Some(piece))
    }

    /// Reads until `buf` holds `size` more bytes than it did, or the input
    /// ends (then returns true).
    fn fill(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
        let target = buf.len() + self.size;
        let mut len = buf.len();
        buf.resize(target, 0);
        let eof = loop {
            match self.reader.read(&mut buf[len..]) {
                Ok(0) => break true,
                Ok(n) => {
                    len += n;
                    if len == target {
                        break false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        buf.truncate(len);
        Ok(eof)
    }

    /// The sha256 (hex) of everything the pieces held, if made
    /// [`LineChunks::hashing`]; complete once [`LineChunks::next_piece`] has
    /// returned `None`.
    pub fn sha256(&self) -> Option<String> {
        self.hasher.as_ref().map(|h| hex::encode(h.clone().finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &[u8], size: usize) -> Vec<Piece> {
        let mut chunks = LineChunks::hashing(input, size);
        let mut out = vec![];
        while let Some(p) = chunks.next_piece().unwrap() {
            out.push(p);
        }
        assert_eq!(chunks.sha256(), Some(crate::lake::sha256_hex(input)));
        out
    }

    #[test]
    fn pieces_end_at_line_breaks_and_number_their_lines() {
        let input = b"aa\nbbbb\n\ncc\nd";
        let got = pieces(input, 4);
        let view: Vec<_> = got.iter().map(|p| (p.first_line, p.bytes.as_slice())).collect();
        assert_eq!(view, [(1, &b"aa\n"[..]), (2, b"bbbb\n"), (3, b"\ncc\n"), (5, b"d")]);
        // Whatever the size, the pieces put together are the input.
        for size in [1, 2, 3, 5, 8, 13, 100] {
            let got = pieces(input, size);
            assert_eq!(got.iter().flat_map(|p| p.bytes.clone()).collect::<Vec<u8>>(), input, "size {size}");
            let lines: Vec<u64> = got.iter().map(|p| p.first_line).collect();
            let expected: Vec<u64> = got
                .iter()
                .scan(1, |line, p| {
                    let first = *line;
                    *line += p.bytes.iter().filter(|&&b| b == b'\n').count() as u64;
                    Some(first)
                })
                .collect();
            assert_eq!(lines, expected, "size {size}");
            assert!(got.iter().rev().skip(1).all(|p| p.bytes.ends_with(b"\n")), "size {size}");
        }
    }

    #[test]
    fn a_line_longer_than_a_piece_stays_whole_and_empty_input_has_no_piece() {
        let got = pieces(b"0123456789\nab\n", 3);
        assert_eq!(got[0].bytes, b"0123456789\n");
        assert_eq!(got[1], Piece { first_line: 2, bytes: b"ab\n".to_vec() });
        assert!(pieces(b"", 3).is_empty());
    }
}
