//! Criterion benches of CPU scoring: one batch of 32 synthetic pairs through the fused CPU path
//! (f32 and int8) and through the burn model on flex, for the 3/384 student shape and the 2/128 one, with random
//! weights (speed does not depend on them). `tinyrank bench` covers every shape and backend,
//! real text and peak memory; these track the CPU paths from commit to commit.
//!
//!     cargo bench --bench scoring

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tinyrank_core::burn::tensor::Device;
use tinyrank_core::fast::{FastCrossEncoder, Precision};
use tinyrank_core::model::Trace;
use tinyrank_core::{Batch, BertConfig, Encoded};

const BATCH: usize = 32;

fn pairs(len: usize) -> Vec<Encoded> {
    (0..BATCH)
        .map(|row| Encoded {
            ids: (0..len)
                .map(|j| (1000 + (row * 7919 + j * 104_729) % 29_000) as u32)
                .collect(),
            type_ids: (0..len).map(|j| u32::from(j > len / 8)).collect(),
        })
        .collect()
}

fn scoring(c: &mut Criterion) {
    let device = Device::flex();
    let mut group = c.benchmark_group("score 32 pairs");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    for (layers, hidden, heads) in [(3, 384, 12), (2, 128, 2)] {
        let config = BertConfig::new(30522, hidden, layers, heads, 4 * hidden);
        let model = tinyrank_core::weights::random_model(&config, &device);
        let fast = FastCrossEncoder::from_model(&model, Precision::F32);
        let int8 = FastCrossEncoder::from_model(&model, Precision::Int8);
        for len in [128, 256] {
            let encoded = pairs(len);
            let rows: Vec<&Encoded> = encoded.iter().collect();
            let batch = Batch::from_encoded(&encoded, 0, &device);
            let name = format!("{layers}/{hidden} @ {len}");
            group.bench_function(BenchmarkId::new("fused", &name), |b| {
                b.iter(|| fast.score(&rows))
            });
            group.bench_function(BenchmarkId::new("fused int8", &name), |b| {
                b.iter(|| int8.score(&rows))
            });
            group.bench_function(BenchmarkId::new("burn flex", &name), |b| {
                b.iter(|| {
                    model
                        .forward(&batch, Trace::default())
                        .ranking_scores()
                        .into_data()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
