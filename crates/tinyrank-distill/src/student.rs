//! Where a student comes from: `--student DIR` (a Hugging Face checkpoint),
//! `--student teacher-layers:1,3,5` (some of the teacher's layers, with its embeddings, pooler and
//! head) or `--student random:layers=3,hidden=384,heads=12,ffn=1536` (a fresh BERT that uses the
//! teacher's vocabulary and tokenizer).

use std::path::PathBuf;
use std::str::FromStr;

use tinyrank_core::burn::tensor::Device;
use tinyrank_core::{BertConfig, Checkpoint, Error};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StudentSpec {
    Checkpoint(PathBuf),
    TeacherLayers(Vec<usize>),
    Random {
        layers: usize,
        hidden: usize,
        heads: usize,
        ffn: usize,
    },
}

impl FromStr for StudentSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(list) = s.strip_prefix("teacher-layers:") {
            let layers = list
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("teacher-layers: {x:?} is not a layer index"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(StudentSpec::TeacherLayers(layers));
        }
        if let Some(fields) = s.strip_prefix("random:") {
            let (mut layers, mut hidden, mut heads, mut ffn) = (None, None, None, None);
            for field in fields.split(',') {
                let (key, value) = field
                    .split_once('=')
                    .ok_or_else(|| format!("random: expected key=value, found {field:?}"))?;
                let value: usize = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| format!("random: {key} must be a positive integer"))?;
                match key.trim() {
                    "layers" => layers = Some(value),
                    "hidden" => hidden = Some(value),
                    "heads" => heads = Some(value),
                    "ffn" => ffn = Some(value),
                    other => {
                        return Err(format!(
                            "random: unknown field {other:?} (layers, hidden, heads, ffn)"
                        ));
                    }
                }
            }
            let hidden = hidden.ok_or("random: hidden= is required")?;
            return Ok(StudentSpec::Random {
                layers: layers.ok_or("random: layers= is required")?,
                hidden,
                heads: heads.unwrap_or(12),
                ffn: ffn.unwrap_or(4 * hidden),
            });
        }
        Ok(StudentSpec::Checkpoint(PathBuf::from(s)))
    }
}

/// Builds the student on `device`. A checkpoint may be a bare encoder (its head is initialised).
pub fn build_student(
    spec: &StudentSpec,
    teacher_dir: &std::path::Path,
    device: &Device,
) -> Result<Checkpoint, Error> {
    match spec {
        StudentSpec::Checkpoint(dir) => Checkpoint::load_encoder(dir, device),
        StudentSpec::TeacherLayers(keep) => {
            Checkpoint::load(teacher_dir, device)?.select_layers(keep)
        }
        StudentSpec::Random {
            layers,
            hidden,
            heads,
            ffn,
        } => {
            let teacher = Checkpoint::load(teacher_dir, device)?;
            let mut config =
                BertConfig::new(teacher.config.vocab_size, *hidden, *layers, *heads, *ffn);
            config.max_position_embeddings = teacher.config.max_position_embeddings;
            config.set_num_labels(teacher.model.num_labels());
            config.validate("--student random:")?;
            teacher.fresh_with_config(config, device)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            "teacher-layers:1,3,5".parse::<StudentSpec>().unwrap(),
            StudentSpec::TeacherLayers(vec![1, 3, 5])
        );
        assert_eq!(
            "random:layers=3,hidden=384,heads=12,ffn=1536"
                .parse::<StudentSpec>()
                .unwrap(),
            StudentSpec::Random {
                layers: 3,
                hidden: 384,
                heads: 12,
                ffn: 1536
            }
        );
        assert_eq!(
            "random:layers=2,hidden=128,heads=2"
                .parse::<StudentSpec>()
                .unwrap(),
            StudentSpec::Random {
                layers: 2,
                hidden: 128,
                heads: 2,
                ffn: 512
            }
        );
        assert!(
            "teacher-layers:1,x"
                .parse::<StudentSpec>()
                .unwrap_err()
                .contains("\"x\"")
        );
        assert!(
            "random:layers=3"
                .parse::<StudentSpec>()
                .unwrap_err()
                .contains("hidden")
        );
        assert!("random:layers=0,hidden=8".parse::<StudentSpec>().is_err());
        assert_eq!(
            "models/s".parse::<StudentSpec>().unwrap(),
            StudentSpec::Checkpoint("models/s".into())
        );
    }
}
