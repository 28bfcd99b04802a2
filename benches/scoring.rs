//! Criterion benches of CPU scoring: one batch of 32 synthetic pairs through each CPU engine of
//! `Reranker` (fused f32, fused int8, and the burn model on flex), for the 3/384 student shape and the 2/128 one, with random
//! weights (speed does not depend on them). `tinyrank bench` covers every shape and backend,
//! real text and peak memory; these track the CPU paths from commit to commit.
//!
//!     cargo bench --bench scoring

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tinyrank_core::burn::tensor::Device;
use tinyrank_core::{BertConfig, Encoded, EngineKind, PairTokenizer, Precision, Reranker};

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
    // Synthetic ids need no vocabulary beyond BERT's special tokens.
    let tokenizer = PairTokenizer::from_vocab("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", None, "synthetic")
        .expect("a minimal vocabulary");
    let engines = [
        ("fused", EngineKind::Fused(Precision::F32)),
        ("fused int8", EngineKind::Fused(Precision::Int8)),
        ("burn flex", EngineKind::Burn),
    ];
    for (layers, hidden, heads) in [(3, 384, 12), (2, 128, 2)] {
        let config = BertConfig::new(30522, hidden, layers, heads, 4 * hidden);
        let model = tinyrank_core::weights::random_model(&config, &device);
        for (engine, kind) in engines {
            let reranker =
                Reranker::with_engine(model.clone(), tokenizer.clone(), device.clone(), kind)
                    .expect("a CPU engine");
            for len in [128, 256] {
                let encoded = pairs(len);
                let rows: Vec<&Encoded> = encoded.iter().collect();
                let name = format!("{layers}/{hidden} @ {len}");
                group.bench_function(BenchmarkId::new(engine, &name), |b| {
                    b.iter(|| reranker.score_batch(&rows))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
