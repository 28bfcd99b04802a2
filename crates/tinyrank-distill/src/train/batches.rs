//! The data order: examples tokenised once, grouped into units (single pairs, or a group of
//! one query's candidates), and visited epoch after epoch in seeded permutations, so that the
//! order is a pure function of (seed, step) and a resumed run sees what an unbroken one would.

use tinyrank_core::{Cut, Encoded, PairTokenizer};

use super::TrainError;
use crate::examples::{Example, epoch_order};

/// The order in which units are visited: epoch after epoch, each a seeded permutation.
pub(super) struct EpochOrders {
    len: usize,
    seed: u64,
    epoch: u64,
    order: Vec<usize>,
}

impl EpochOrders {
    pub fn new(len: usize, seed: u64) -> Self {
        Self {
            len,
            seed,
            epoch: 0,
            order: epoch_order(len, seed, 0),
        }
    }

    /// The unit at position `position` of the endless stream of epochs.
    pub fn unit_at(&mut self, position: usize) -> usize {
        let epoch = (position / self.len) as u64;
        if epoch != self.epoch {
            self.epoch = epoch;
            self.order = epoch_order(self.len, self.seed, epoch);
        }
        self.order[position % self.len]
    }
}

/// Groups of example indices visited together: single examples, or for grouped methods chunks
/// of `group` candidates of one query (shuffled within the query with the seed; a remainder
/// smaller than a group is left out).
pub(super) fn make_units(examples: &[Example], group: usize, seed: u64) -> Vec<Vec<usize>> {
    if group == 1 {
        return (0..examples.len()).map(|i| vec![i]).collect();
    }
    let mut units = Vec::new();
    for range in runs_of(examples, |e| &e.query_id) {
        let order = epoch_order(range.len(), seed, range.start as u64);
        for chunk in order.chunks_exact(group) {
            units.push(chunk.iter().map(|i| range.start + i).collect());
        }
    }
    units
}

/// The index ranges of consecutive examples that share `key`.
fn runs_of<'a, K: PartialEq + 'a>(
    examples: &'a [Example],
    key: impl Fn(&'a Example) -> K + 'a,
) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
    let mut start = 0;
    std::iter::from_fn(move || {
        let first = examples.get(start)?;
        let k = key(first);
        let len = examples[start..].iter().take_while(|e| key(e) == k).count();
        let range = start..start + len;
        start += len;
        Some(range)
    })
}

pub(super) fn encode_examples(
    tokenizer: &PairTokenizer,
    cut: Cut,
    examples: &[Example],
) -> Result<Vec<Encoded>, TrainError> {
    let mut encoded = Vec::with_capacity(examples.len());
    // Consecutive examples of one query are tokenised as one batch.
    for range in runs_of(examples, |e| &e.query) {
        let passages: Vec<&str> = examples[range.clone()]
            .iter()
            .map(|e| e.passage.as_str())
            .collect();
        encoded.extend(tokenizer.encode_pairs(&examples[range.start].query, &passages, cut)?);
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_hold_candidates_of_one_query() {
        let ex = |q: &str| Example {
            query_id: q.into(),
            query: q.into(),
            passage: "p".into(),
            ..Example::default()
        };
        let examples: Vec<Example> = ["a", "a", "a", "a", "a", "b", "b", "c"]
            .into_iter()
            .map(ex)
            .collect();
        let units = make_units(&examples, 2, 1);
        assert_eq!(units.len(), 3);
        for u in &units {
            assert_eq!(examples[u[0]].query_id, examples[u[1]].query_id);
        }
        assert_eq!(make_units(&examples, 1, 1).len(), 8);
    }
}
