//! `text`: generated lines of words for the word-count workload.
//!
//! Word ranks follow a discrete log-uniform law (close to Zipf with exponent 1): a level `b` is
//! chosen uniformly in `0..12`, then a rank uniformly among the `2^b` ranks `2^b - 1 ..
//! 2^(b+1) - 1`. Rank 0 ("lo") is 1/12 of all words, the 2048 rarest ranks share another 1/12.
//! Spelling, capitalisation and punctuation are fixed so that a word-count job has real
//! tokenising and lower-casing work to do. All choices come from [`splitmix64_at`], so line `i`
//! is a pure function of `(seed, i)`.

use super::splitmix::splitmix64_at;

/// Number of levels of the log-uniform rank distribution.
pub const LEVELS: u64 = 12;

/// Vocabulary size: ranks `0 .. 2^LEVELS - 1`.
pub const VOCABULARY: u64 = (1 << LEVELS) - 1;

/// The 16 syllables; a word is its `rank + 1` written in base 16 with these as digits.
pub const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ba", "de", "fu", "ga", "hi", "jo", "pe", "zu",
];

/// Random words consumed per line: one for the length, then one per word.
const DRAWS_PER_LINE: u64 = 16;

/// Generator of text lines for one seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextGen {
    seed: u64,
}

impl TextGen {
    /// A text stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Number of words on line `index`: 4 to 12.
    #[inline]
    pub fn words_on_line(&self, index: u64) -> u64 {
        4 + splitmix64_at(self.seed, index.wrapping_mul(DRAWS_PER_LINE)) % 9
    }

    /// Rank of word `j` (0-based) on line `index`, in `0..VOCABULARY`.
    #[inline]
    pub fn word_rank(&self, index: u64, j: u64) -> u64 {
        rank_of(self.word_draw(index, j))
    }

    #[inline]
    fn word_draw(&self, index: u64, j: u64) -> u64 {
        splitmix64_at(
            self.seed,
            index.wrapping_mul(DRAWS_PER_LINE).wrapping_add(1 + j),
        )
    }

    /// Appends line `index` (no newline) to `out`: words separated by a space, some followed by a
    /// comma, the first capitalised, a full stop at the end. E.g. `"Lo mika, ru sahine lo."`.
    pub fn line_into(&self, index: u64, out: &mut String) {
        let words = self.words_on_line(index);
        for j in 0..words {
            let draw = self.word_draw(index, j);
            let start = out.len();
            push_word(rank_of(draw), out);
            if j == 0 {
                // Words are ASCII, so upper-casing the first byte keeps the string valid UTF-8.
                if let Some(first) = out[start..].get_mut(..1) {
                    first.make_ascii_uppercase();
                }
            }
            if j + 1 < words {
                if (draw >> 40).is_multiple_of(8) {
                    out.push(',');
                }
                out.push(' ');
            } else {
                out.push('.');
            }
        }
    }

    /// Line `index` as a new `String` (convenience; prefer [`TextGen::line_into`] in hot loops).
    pub fn line(&self, index: u64) -> String {
        let mut s = String::with_capacity(64);
        self.line_into(index, &mut s);
        s
    }
}

/// The log-uniform rank of a 64-bit draw.
#[inline]
fn rank_of(draw: u64) -> u64 {
    let level = draw % LEVELS;
    let span = 1u64 << level;
    span - 1 + (draw >> 8) % span
}

/// Appends the lower-case spelling of `rank` to `out`.
pub fn push_word(rank: u64, out: &mut String) {
    let m = rank + 1;
    let mut shift = 60;
    while shift > 0 && (m >> shift) == 0 {
        shift -= 4;
    }
    loop {
        out.push_str(SYLLABLES[((m >> shift) & 15) as usize]);
        if shift == 0 {
            break;
        }
        shift -= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn word(rank: u64) -> String {
        let mut s = String::new();
        push_word(rank, &mut s);
        s
    }

    #[test]
    fn vocabulary_spelling_is_unique() {
        assert_eq!(word(0), "lo");
        assert_eq!(word(14), "zu");
        assert_eq!(word(15), "loka");
        assert_eq!(word(VOCABULARY - 1), "zuzuzu");
        let mut all: Vec<String> = (0..VOCABULARY).map(word).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len() as u64, VOCABULARY);
    }

    #[test]
    fn lines_are_deterministic_and_well_formed() {
        let g = TextGen::new(3);
        for i in 0..1000 {
            let line = g.line(i);
            assert_eq!(line, g.line(i));
            assert!(line.ends_with('.'));
            assert!(line.as_bytes()[0].is_ascii_uppercase());
            let words: Vec<&str> = line
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            assert_eq!(words.len() as u64, g.words_on_line(i));
            for (j, w) in words.iter().enumerate() {
                assert_eq!(w.to_ascii_lowercase(), word(g.word_rank(i, j as u64)));
            }
        }
    }

    #[test]
    fn ranks_are_skewed_as_specified() {
        let g = TextGen::new(1);
        let mut counts: HashMap<u64, u64> = HashMap::new();
        let mut total = 0u64;
        for i in 0..20_000 {
            for j in 0..g.words_on_line(i) {
                *counts.entry(g.word_rank(i, j)).or_default() += 1;
                total += 1;
            }
        }
        let top = counts[&0] as f64 / total as f64;
        assert!((top - 1.0 / 12.0).abs() < 0.01, "rank 0 share {top}");
        assert!(counts.keys().all(|&r| r < VOCABULARY));
        // Rare ranks exist but each is rare.
        assert!(counts.len() > 2000);
    }
}
