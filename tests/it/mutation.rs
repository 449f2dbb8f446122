//! Deterministic mutation of a corpus of valid inputs (tests/corpus/), as a
//! fuzzer mutates them: shared by the bounded fuzz runs (fuzz.rs) and the
//! bad-input tests against a running server (bad_input.rs).

use std::path::{Path, PathBuf};

/// The files of `tests/corpus/<name>/`, sorted by name, with their bytes.
pub(crate) fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    files.into_iter().map(|path| (path.clone(), std::fs::read(&path).expect("corpus file"))).collect()
}

/// Deterministic edits of bytes: deletions, insertions from `alphabet`,
/// truncations, bit flips and repeated slices, one to eight per input.
pub(crate) struct Mutator(pub(crate) u64);

impl Mutator {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub(crate) fn mutate(&mut self, seed: &[u8], alphabet: &[u8]) -> Vec<u8> {
        let mut input = seed.to_vec();
        for _ in 0..self.below(8) + 1 {
            let at = self.below(input.len() + 1);
            match self.below(5) {
                0 if !input.is_empty() => {
                    input.remove(at.min(input.len() - 1));
                }
                1 => input.insert(at, alphabet[self.below(alphabet.len())]),
                2 if at > 0 => input.truncate(at),
                3 if !input.is_empty() => {
                    let i = at.min(input.len() - 1);
                    input[i] ^= 1 << self.below(8);
                }
                _ if !input.is_empty() => {
                    let start = at.min(input.len() - 1);
                    let end = (start + self.below(16) + 1).min(input.len());
                    let slice = input[start..end].to_vec();
                    input.splice(start..start, slice);
                }
                _ => input.push(alphabet[self.below(alphabet.len())]),
            }
        }
        input
    }
}
