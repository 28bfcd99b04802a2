//! Weight averaging ("model soup", Wortsman et al. 2022): the mean of several fine-tunes of one
//! starting point often ranks better than any of them, at no cost at inference.

use std::collections::HashMap;

use burn::tensor::{Device, Tensor};

use crate::Error;
use crate::checkpoint::Checkpoint;
use crate::model::CrossEncoder;
use crate::params::{self, ParamRef, ParamSource, names, push_linear};

impl Checkpoint {
    /// The parameter-wise mean of `checkpoints`, which must share a shape and a tokenizer
    /// (`origins` names each in messages). `fit_dense` is averaged where every one has it.
    pub fn average(
        checkpoints: &[Checkpoint],
        origins: &[String],
        device: &Device,
    ) -> Result<Checkpoint, Error> {
        let Some(first) = checkpoints.first() else {
            return Err(Error::Input(
                "averaging needs at least one checkpoint".into(),
            ));
        };
        assert_eq!(
            checkpoints.len(),
            origins.len(),
            "one origin per checkpoint"
        );
        for (checkpoint, origin) in checkpoints.iter().zip(origins).skip(1) {
            same_kind(first, checkpoint, &origins[0], origin)?;
        }
        let with_fit = checkpoints.iter().all(|c| c.fit_dense.is_some());
        let mut source = Mean::new(checkpoints, origins, with_fit, device);
        let model = CrossEncoder::build(&first.config, &mut source)?;
        let fit_dense = match first.fit_dense.as_ref().filter(|_| with_fit) {
            Some(fit) => {
                let [d_in, d_out] = fit.weight.dims();
                Some(params::linear(&mut source, names::FIT_DENSE, d_in, d_out)?)
            }
            None => None,
        };
        Ok(Checkpoint {
            config: first.config.clone(),
            model,
            fit_dense,
            tokenizer: first.tokenizer.clone(),
            tokenizer_files: first.tokenizer_files.clone(),
            initialised: Vec::new(),
        })
    }
}

/// What the weights' shapes do not show: the parts of the config that change the function,
/// and the tokenizer.
fn same_kind(a: &Checkpoint, b: &Checkpoint, a_at: &str, b_at: &str) -> Result<(), Error> {
    let (x, y) = (&a.config, &b.config);
    let differs = |what: &str| {
        Err(Error::Input(format!(
            "cannot average {b_at} with {a_at}: their {what} differ"
        )))
    };
    if x.num_hidden_layers != y.num_hidden_layers || x.hidden_size != y.hidden_size {
        return differs("shapes (config.json)");
    }
    if x.num_attention_heads != y.num_attention_heads
        || x.hidden_act != y.hidden_act
        || x.layer_norm_eps != y.layer_norm_eps
        || x.position_embedding_type != y.position_embedding_type
    {
        return differs("configs (heads, activation, layer-norm epsilon or positions)");
    }
    if a.tokenizer_files != b.tokenizer_files {
        return differs("tokenizer files");
    }
    Ok(())
}

/// A [`ParamSource`] that gives, for each name, the mean of that parameter over the models.
struct Mean<'a> {
    device: Device,
    params: Vec<HashMap<String, ParamRef<'a>>>,
    origins: &'a [String],
}

impl<'a> Mean<'a> {
    fn new(
        checkpoints: &'a [Checkpoint],
        origins: &'a [String],
        with_fit: bool,
        device: &Device,
    ) -> Self {
        let params = checkpoints
            .iter()
            .map(|c| {
                let mut named = c.model.named_params();
                if let Some(fit) = c.fit_dense.as_ref().filter(|_| with_fit) {
                    push_linear(&mut named, names::FIT_DENSE, fit);
                }
                named.into_iter().collect()
            })
            .collect();
        Self {
            device: device.clone(),
            params,
            origins,
        }
    }

    fn each(&self, name: &str) -> Result<Vec<&ParamRef<'a>>, Error> {
        self.params
            .iter()
            .zip(self.origins)
            .map(|(named, origin)| {
                named.get(name).ok_or_else(|| {
                    Error::Input(format!("cannot average: {origin} has no parameter {name}"))
                })
            })
            .collect()
    }

    /// The mean of `name` over the models; `value` takes a parameter's tensor out of its
    /// [`ParamRef`] (None: a matrix where a vector was asked for, or the other way round).
    fn mean<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        value: impl Fn(&ParamRef<'a>) -> Option<Tensor<D>>,
    ) -> Result<Tensor<D>, Error> {
        let each = self.each(name)?;
        let mut sum = Tensor::<D>::zeros(shape, &self.device);
        for (i, param) in each.iter().enumerate() {
            let value = value(param);
            let dims = value.as_ref().map(|v| v.dims());
            let (Some(value), true) = (value, dims == Some(shape)) else {
                let got = dims.map_or_else(|| "another kind".into(), |d| format!("{d:?}"));
                return Err(Error::Input(format!(
                    "cannot average: {}'s {name} has shape {got}, {}'s {shape:?}",
                    self.origins[i], self.origins[0]
                )));
            };
            sum = sum + value;
        }
        Ok(sum / each.len() as f32)
    }
}

impl ParamSource for Mean<'_> {
    fn device(&self) -> &Device {
        &self.device
    }

    fn matrix(&mut self, name: &str, shape: [usize; 2], _: bool) -> Result<Tensor<2>, Error> {
        self.mean(name, shape, |param| match param {
            ParamRef::Matrix { param, .. } => Some(param.val()),
            ParamRef::Vector(_) => None,
        })
    }

    fn vector(&mut self, name: &str, len: usize, _: f32) -> Result<Tensor<1>, Error> {
        self.mean(name, [len], |param| match param {
            ParamRef::Vector(param) => Some(param.val()),
            ParamRef::Matrix { .. } => None,
        })
    }
}
