//! The training examples `tinyrank distill` assembles from its flags (dataset pools,
//! pseudo-queries, triples, document passages), each source named for the run's identity.

use anyhow::{Result, anyhow, bail};
use tinyrank_core::{Reranker, WordWindows};
use tinyrank_distill::augment::{
    Augmenter, Bm25Index, Origin, Pool, QueryVariants, TopK, WordVectors,
};
use tinyrank_distill::examples::{
    DocumentExamples, Example, from_dataset, from_documents, from_triples,
};

use super::{DistillArgs, Paths};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DocPassages {
    All,
    TeacherBest,
}

pub(super) struct TrainingData {
    pub examples: Vec<Example>,
    /// How the run's identity names each source.
    pub sources: Vec<String>,
    /// Passages of --train-docs, held apart until `merge_documents` (the teacher may filter
    /// them, and it loads after the data).
    documents: Vec<DocumentExamples>,
}

impl TrainingData {
    /// Reads every source the flags name: `top_k` candidates per query, `augment` pseudo-queries.
    pub fn read(args: &DistillArgs, paths: &Paths, top_k: usize, augment: u64) -> Result<Self> {
        let mut data = Self {
            examples: Vec::new(),
            sources: Vec::new(),
            documents: Vec::new(),
        };
        for dir in &paths.train {
            data.examples
                .extend(from_dataset(dir, top_k, args.min_rel)?);
            data.sources.push(format!(
                "{} top-{top_k} min-rel {}",
                dir.display(),
                args.min_rel
            ));
        }
        if augment > 0 || args.augment_variants > 0 {
            data.augment(args, paths, top_k, augment)?;
        }
        for file in &args.triples {
            data.examples.extend(from_triples(file)?);
            data.sources.push(file.display().to_string());
        }
        let windows = WordWindows::new(args.doc_window, args.doc_stride)?;
        for dir in &args.train_docs {
            data.documents.extend(from_documents(
                dir,
                top_k,
                args.min_rel,
                windows,
                args.doc_title,
            )?);
            data.sources.push(format!(
                "{} documents top-{top_k} min-rel {}, {}-word windows stride {}, title {:?}, \
                 passages {:?}",
                dir.display(),
                args.min_rel,
                args.doc_window,
                args.doc_stride,
                args.doc_title,
                args.doc_passages
            ));
        }
        Ok(data)
    }

    /// Whether `merge_documents` wants the teacher to pick passages of relevant documents.
    pub fn wants_teacher_filter(&self, passages: DocPassages) -> bool {
        passages == DocPassages::TeacherBest && !self.documents.is_empty()
    }

    /// Adds the documents' passages to the examples, with `teacher_best` keeping of each
    /// relevant document only the passage it scores highest.
    pub fn merge_documents(&mut self, teacher_best: Option<&Reranker>) -> Result<()> {
        if let Some(teacher) = teacher_best {
            let kept = keep_teacher_best_passages(teacher, &mut self.documents)?;
            eprintln!("teacher-best: kept {kept} passages of relevant documents");
        }
        let documents = std::mem::take(&mut self.documents);
        self.examples
            .extend(documents.into_iter().flat_map(|d| d.passages));
        Ok(())
    }

    /// `augment` pseudo-queries and --augment-variants query variants over the training
    /// collections, the evaluation set kept out, each with `top_k` candidates unless
    /// --augment-top-k says otherwise.
    fn augment(
        &mut self,
        args: &DistillArgs,
        paths: &Paths,
        top_k: usize,
        augment: u64,
    ) -> Result<()> {
        if paths.train.is_empty() {
            bail!("--augment and --augment-variants draw on the --train collections: give --train");
        }
        let top_k = match args.augment_top_k {
            Some(k) => k,
            None => TopK::new(top_k).map_err(|e| {
                anyhow!("--augment-top-k (--train-top-k's {top_k} unless given): {e}")
            })?,
        };
        let seed = args.config.seed;
        let pool = Pool::read(&paths.train, std::slice::from_ref(&paths.eval))?;
        let index = Bm25Index::new(&pool);
        let eval = paths.eval.display();
        let held_out = format!(
            "over {} passages ({} held out by {eval})",
            pool.len(),
            pool.excluded
        );
        let mut add = |examples: Vec<Example>, what: String, identity: String| {
            eprintln!(
                "augmentation: {} pairs of {what} {held_out}",
                examples.len()
            );
            self.examples.extend(examples);
            self.sources.push(format!(
                "{identity}, top-{top_k}, seed {seed}, held out {eval}"
            ));
        };
        if augment > 0 {
            let spans = Origin::Spans(args.augment_span);
            let examples = Augmenter::new(&index, spans, top_k, seed).examples(augment, true)?;
            let span = args.augment_span;
            let identity = format!("augment {augment} queries of {span} words");
            add(examples, format!("{augment} pseudo-queries"), identity);
        }
        let count = args.augment_variants;
        if count > 0 {
            let examples = query_variants(&index, paths, count, top_k, seed)?;
            let vectors = paths.teacher.display();
            let identity = format!("augment {count} query variants (word vectors of {vectors})");
            add(examples, format!("{count} query variants"), identity);
        }
        Ok(())
    }
}

/// `count` variants of the --train queries, their words' neighbours taken from the teacher's
/// word embeddings.
fn query_variants(
    index: &Bm25Index<'_>,
    paths: &Paths,
    count: u64,
    top_k: TopK,
    seed: u64,
) -> Result<Vec<Example>> {
    let vectors = WordVectors::load(&paths.teacher)?;
    let variants = Origin::Variants(QueryVariants::read(&paths.train, &vectors)?);
    let examples = Augmenter::new(index, variants, top_k, seed).examples(count, false)?;
    if examples.is_empty() {
        bail!(
            "--augment-variants: the word embeddings of {} give no word of the --train queries a \
             neighbour to replace it with (a whole-word vocabulary is needed)",
            paths.teacher.display()
        );
    }
    Ok(examples)
}

/// Keeps, of each relevant document with several passages, only the one `teacher` scores
/// highest; returns how many passages of relevant documents remain.
fn keep_teacher_best_passages(
    teacher: &Reranker,
    documents: &mut [DocumentExamples],
) -> Result<usize> {
    let mut kept = 0;
    for doc in documents.iter_mut().filter(|d| d.label == Some(1)) {
        if doc.passages.len() > 1 {
            let query = doc.passages[0].query.clone();
            let texts: Vec<&str> = doc.passages.iter().map(|p| p.passage.as_str()).collect();
            let scores = teacher.score(&query, &texts)?;
            let best = (0..scores.len())
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .expect("several passages");
            doc.passages = vec![doc.passages.swap_remove(best)];
        }
        kept += doc.passages.len();
    }
    Ok(kept)
}
