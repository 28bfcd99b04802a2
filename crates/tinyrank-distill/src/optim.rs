//! AdamW with decoupled weight decay, global-norm gradient clipping, gradient accumulation and a
//! linear warm-up / linear decay schedule: the optimiser of BERT fine-tuning.
//!
//! Written here rather than taken from burn-optim for two reasons: burn clips each tensor's
//! gradient on its own, while BERT recipes clip the norm of all gradients together (torch's
//! `clip_grad_norm_`); and the state is kept by parameter path, so it is saved in the training
//! checkpoint as named tensors and a resumed run continues exactly.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};

/// Adam's running averages of one parameter, flattened, on the inner (non-autodiff) device.
#[derive(Debug, Clone)]
struct Moments {
    first: Tensor<1>,
    second: Tensor<1>,
}

#[derive(Debug, Clone)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    /// Updates applied so far (Adam's bias correction counts from 1).
    pub updates: u64,
    moments: BTreeMap<String, Moments>,
}

impl AdamW {
    /// torch's AdamW defaults with the given decay.
    pub fn new(weight_decay: f64) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay,
            updates: 0,
            moments: BTreeMap::new(),
        }
    }

    /// Forgets the running averages (TinyBERT's second step starts a fresh optimiser).
    pub fn reset(&mut self) {
        self.updates = 0;
        self.moments.clear();
    }

    /// Applies one update to every parameter of `module` that has an accumulated gradient;
    /// `scale` (one element, on the device) multiplies the summed gradients.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: &AccumulatedGrads,
        lr: f64,
        scale: Tensor<1>,
    ) -> M {
        self.updates += 1;
        let mut update = Update {
            path: Vec::new(),
            optimizer: self,
            grads,
            lr,
            scale,
        };
        module.map(&mut update)
    }

    /// The state as named flat f32 tensors (`<path>.exp_avg`, `<path>.exp_avg_sq`).
    pub fn state_tensors(&self) -> Result<Vec<(String, Vec<f32>)>, String> {
        let mut out = Vec::with_capacity(2 * self.moments.len());
        for (path, m) in &self.moments {
            out.push((format!("{path}.exp_avg"), read_f32(m.first.clone())?));
            out.push((format!("{path}.exp_avg_sq"), read_f32(m.second.clone())?));
        }
        Ok(out)
    }

    /// Restores what [`AdamW::state_tensors`] saved.
    pub fn load_state(
        &mut self,
        updates: u64,
        tensors: BTreeMap<String, Vec<f32>>,
        device: &Device,
    ) -> Result<(), String> {
        self.reset();
        self.updates = updates;
        let mut firsts = BTreeMap::new();
        let mut seconds = BTreeMap::new();
        for (name, values) in tensors {
            let n = values.len();
            let tensor = Tensor::<1>::from_data(TensorData::new(values, [n]), device);
            if let Some(path) = name.strip_suffix(".exp_avg_sq") {
                seconds.insert(path.to_string(), tensor);
            } else if let Some(path) = name.strip_suffix(".exp_avg") {
                firsts.insert(path.to_string(), tensor);
            } else {
                return Err(format!("unexpected optimizer tensor {name}"));
            }
        }
        for (path, first) in firsts {
            let second = seconds
                .remove(&path)
                .ok_or_else(|| format!("optimizer state of {path} lacks exp_avg_sq"))?;
            self.moments.insert(path, Moments { first, second });
        }
        if let Some(path) = seconds.keys().next() {
            return Err(format!("optimizer state of {path} lacks exp_avg"));
        }
        Ok(())
    }
}

fn read_f32(t: Tensor<1>) -> Result<Vec<f32>, String> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("reading optimizer state: {e:?}"))
}

/// BERT's convention: no weight decay on biases and LayerNorm parameters.
fn decays(path: &[String]) -> bool {
    !matches!(
        path.last().map(String::as_str),
        Some("bias" | "beta" | "gamma")
    )
}

/// Sums of gradients over the micro-batches of one optimiser step, by parameter path.
#[derive(Debug, Default)]
pub struct AccumulatedGrads {
    sums: BTreeMap<String, Tensor<1>>,
    pub micro_batches: usize,
}

impl AccumulatedGrads {
    /// Adds the gradients of `module`'s parameters from one backward pass.
    pub fn add<M: Module>(&mut self, module: &M, grads: &Gradients) {
        let mut collect = Collect {
            path: Vec::new(),
            grads,
            sums: &mut self.sums,
        };
        module.visit(&mut collect);
        self.micro_batches += 1;
    }

    /// The L2 norm of the mean gradient over all parameters, left on the device (one element;
    /// None without gradients).
    pub fn global_norm(&self) -> Option<Tensor<1>> {
        let squares = self
            .sums
            .values()
            .map(|g| g.clone().square().sum())
            .reduce(|a, b| a + b)?;
        Some(squares.sqrt() / self.micro_batches.max(1) as f64)
    }

    /// What multiplies the summed gradients: 1 / micro-batches, times `max_norm / norm` when the
    /// norm is above `max_norm` (> 0), as torch's `clip_grad_norm_`; computed on the device so
    /// that the step needs no read.
    pub fn scale(&self, norm: &Tensor<1>, max_norm: f64) -> Tensor<1> {
        let mean = 1.0 / self.micro_batches.max(1) as f64;
        if max_norm > 0.0 {
            norm.clone().clamp_min(max_norm).recip() * (max_norm * mean)
        } else {
            norm.ones_like() * mean
        }
    }

    pub fn clear(&mut self) {
        self.sums.clear();
        self.micro_batches = 0;
    }
}

struct Collect<'a> {
    path: Vec<String>,
    grads: &'a Gradients,
    sums: &'a mut BTreeMap<String, Tensor<1>>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = param.val().grad(self.grads) else {
            return;
        };
        let n = grad.shape().num_elements();
        let grad = grad.reshape([n]);
        let path = self.path.join(".");
        let sum = match self.sums.remove(&path) {
            Some(previous) => previous + grad,
            None => grad,
        };
        self.sums.insert(path, sum);
    }
}

struct Update<'a> {
    path: Vec<String>,
    optimizer: &'a mut AdamW,
    grads: &'a AccumulatedGrads,
    lr: f64,
    /// Multiplies the summed gradient: 1 / micro-batches, times the clipping factor.
    scale: Tensor<1>,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let Some(grad) = self.grads.sums.get(&path) else {
            return param;
        };
        let grad = grad.clone() * self.scale.clone();
        let opt = &mut *self.optimizer;
        let (b1, b2) = (opt.beta1, opt.beta2);
        let moments = opt.moments.entry(path).or_insert_with(|| Moments {
            first: grad.zeros_like(),
            second: grad.zeros_like(),
        });
        moments.first = moments.first.clone() * b1 + grad.clone() * (1.0 - b1);
        moments.second = moments.second.clone() * b2 + grad.square() * (1.0 - b2);
        let t = opt.updates as i32;
        let first_hat = moments.first.clone() / (1.0 - b1.powi(t));
        let second_hat = moments.second.clone() / (1.0 - b2.powi(t));
        let step = first_hat / (second_hat.sqrt() + opt.epsilon) * self.lr;
        let decay = if decays(&self.path) {
            1.0 - self.lr * opt.weight_decay
        } else {
            1.0
        };
        param.map(|value| {
            let require_grad = value.is_require_grad();
            let dims = value.dims();
            let n = step.dims()[0];
            let flat = value.inner().reshape([n]);
            let updated = (flat * decay - step).reshape(dims).autodiff();
            if require_grad {
                updated.require_grad()
            } else {
                updated
            }
        })
    }
}

/// Linear warm-up over `warmup` steps to `peak`, then linear decay to 0 at `total`.
pub fn linear_schedule(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let remaining = total.saturating_sub(step) as f64;
    peak * remaining / (total - warmup).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((linear_schedule(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((linear_schedule(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((linear_schedule(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((linear_schedule(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(linear_schedule(100, 100, 10, 1.0), 0.0);
        assert!((linear_schedule(0, 10, 0, 2.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn gradients_are_averaged_and_clipped_on_the_device() {
        let device = Device::flex();
        let acc = AccumulatedGrads {
            sums: BTreeMap::from([(
                "w".to_string(),
                Tensor::<1>::from_floats([6.0, 8.0], &device),
            )]),
            micro_batches: 2,
        };
        let norm = acc.global_norm().unwrap();
        let read = |t: Tensor<1>| t.into_scalar::<f32>();
        assert!((read(norm.clone()) - 5.0).abs() < 1e-6);
        // Above the limit: (1 / 2) x (1 / 5); below it, only the mean; no limit: the mean.
        assert!((read(acc.scale(&norm, 1.0)) - 0.1).abs() < 1e-7);
        assert!((read(acc.scale(&norm, 10.0)) - 0.5).abs() < 1e-7);
        assert!((read(acc.scale(&norm, 0.0)) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // After one step Adam moves each weight by lr * sign(g) (up to epsilon), and decoupled
        // decay scales it by (1 - lr * wd) first; biases are not decayed.
        let device = Device::flex().autodiff();
        let mut linear = burn::nn::LinearConfig::new(2, 1).init(&device);
        linear.weight = Param::from_tensor(
            Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0], [2, 1]), &device)
                .require_grad(),
        );
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 2]), &device);
        let loss = linear.forward(x).sum();
        let grads = loss.backward();
        let mut acc = AccumulatedGrads::default();
        acc.add(&linear, &grads);
        let mut opt = AdamW::new(0.5);
        let (lr, bias_before) = (
            0.1,
            linear.bias.as_ref().unwrap().val().into_scalar::<f32>(),
        );
        let norm = acc.global_norm().unwrap();
        let linear = opt.step(linear, &acc, lr, acc.scale(&norm, 0.0));
        let w: Vec<f32> = linear.weight.val().into_data().try_into_vec().unwrap();
        assert!((w[0] - (1.0 * 0.95 - 0.1)).abs() < 1e-6, "{w:?}");
        assert!((w[1] - (-2.0 * 0.95 - 0.1)).abs() < 1e-6, "{w:?}");
        let b = linear.bias.as_ref().unwrap().val().into_scalar::<f32>();
        assert!((b - (bias_before - 0.1)).abs() < 1e-6);
        assert!(linear.weight.val().is_require_grad());
        let state = opt.state_tensors().unwrap();
        assert_eq!(state.len(), 4);
        assert_eq!(state[0].0, "bias.exp_avg");
    }
}
