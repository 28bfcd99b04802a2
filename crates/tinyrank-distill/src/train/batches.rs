//! The data order: examples tokenised once, grouped into units (single pairs, or a group of
//! one query's candidates), and visited epoch after epoch in seeded permutations, so that the
//! order is a pure function of (seed, step) and a resumed run sees what an unbroken one would.

use tinyrank_core::{Cut, Encoded, PairTokenizer};

use super::TrainError;
use super::config::TrainConfig;
use crate::examples::{Example, epoch_order, runs_of};

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

/// The units a run visits: [`make_units`] in the method's grouping, less those no term learns
/// from when `--skip-idle` asks for it.
pub(crate) fn units_for(config: &TrainConfig, examples: &[Example]) -> Vec<Vec<usize>> {
    let mut units = make_units(examples, config.group(), config.seed);
    if config.skip_idle {
        units.retain(|unit| config.teaches(unit.iter().map(|&i| &examples[i])));
    }
    units
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
    use crate::train::config::Method;

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

    #[test]
    fn skip_idle_leaves_out_units_no_term_learns_from() {
        let ex = |q: &str, grade: Option<u8>| Example {
            query_id: q.into(),
            query: q.into(),
            passage: "p".into(),
            label: grade.map(|g| u8::from(g >= 2)),
            grade,
            prior: Some(1.0),
        };
        let mut examples: Vec<Example> = [0, 0, 2, 0].map(|g| ex("a", Some(g))).into();
        examples.extend([ex("b", None), ex("b", None)]);
        let mut config = TrainConfig::new(Method::FineTune, 1);
        config.group_size = 2;
        config.skip_idle = true;
        // The prior term learns from every group.
        assert_eq!(units_for(&config, &examples).len(), 3);
        config.term_weights = Some("prior=0".parse().unwrap());
        let units = units_for(&config, &examples);
        assert_eq!(units.len(), 1);
        assert!(units[0].contains(&2));
        assert_eq!(config.examples_per_epoch(&examples), 2);
        config.skip_idle = false;
        assert_eq!(units_for(&config, &examples).len(), 3);
        assert_eq!(config.examples_per_epoch(&examples), 6);

        let mut labels = TrainConfig::new(Method::Labels, 1);
        labels.skip_idle = true;
        assert_eq!(units_for(&labels, &examples).len(), 4);
        let mut simplified = TrainConfig::new(Method::Simplified, 1);
        simplified.skip_idle = true;
        assert_eq!(units_for(&simplified, &examples).len(), 6);
    }
}
