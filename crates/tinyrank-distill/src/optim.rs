//! AdamW with decoupled weight decay, global-norm gradient clipping, gradient accumulation and a
//! linear warm-up / linear decay schedule: the optimiser of BERT fine-tuning.
//!
//! Written here rather than taken from burn-optim for two reasons: burn clips each tensor's
//! gradient on its own, while BERT recipes clip the norm of all gradients together (torch's
//! `clip_grad_norm_`); and the state is saved by parameter path, as named tensors in the training
//! checkpoint, so a resumed run continues exactly.
//!
//! The update runs over two flat vectors, the parameters with weight decay and those without
//! (torch's multi-tensor AdamW): a dozen element-wise ops per group instead of per parameter
//! tensor, which matters where every kernel launch costs (a GPU without burn's fusion).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};

/// Adam's running averages, flat, on the inner (non-autodiff) device.
#[derive(Debug, Clone)]
struct Moments {
    first: Tensor<1>,
    second: Tensor<1>,
}

impl Moments {
    fn zeros(len: usize, device: &Device) -> Self {
        Self {
            first: Tensor::zeros([len], device),
            second: Tensor::zeros([len], device),
        }
    }

    fn slice(&self, at: &Slot) -> Self {
        Self {
            first: self.first.clone().slice([at.range()]),
            second: self.second.clone().slice([at.range()]),
        }
    }

    fn cat(parts: Vec<Moments>) -> Self {
        let (first, second) = parts.into_iter().map(|m| (m.first, m.second)).unzip();
        Self {
            first: Tensor::cat(first, 0),
            second: Tensor::cat(second, 0),
        }
    }
}

/// Where one parameter's values sit in its group's flat vector.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    path: String,
    offset: usize,
    len: usize,
}

impl Slot {
    fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The parameters updated together: those with weight decay, or those without.
#[derive(Debug, Clone, PartialEq)]
struct Group {
    /// Whether its parameters get weight decay ([`decays`], decided once when grouping).
    decays: bool,
    slots: Vec<Slot>,
}

/// The optimiser's state: flat per group for the layout of the last step, by parameter path for
/// the rest (all of it before the first step and after a restore; a parameter without a gradient
/// in the last step keeps its averages there).
#[derive(Debug, Clone, Default)]
struct State {
    named: BTreeMap<String, Moments>,
    flat: Option<(Vec<Group>, Vec<Moments>)>,
}

impl State {
    /// The running averages of every parameter by path.
    fn all_named(&self) -> BTreeMap<String, Moments> {
        let mut all = self.named.clone();
        if let Some((groups, moments)) = &self.flat {
            all.extend(sliced(groups, moments));
        }
        all
    }
}

fn sliced<'a>(
    groups: &'a [Group],
    moments: &'a [Moments],
) -> impl Iterator<Item = (String, Moments)> + 'a {
    let pairs = groups.iter().zip(moments);
    pairs.flat_map(|(group, m)| (group.slots.iter()).map(|slot| (slot.path.clone(), m.slice(slot))))
}

#[derive(Debug, Clone)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    /// Updates applied so far (Adam's bias correction counts from 1).
    pub updates: u64,
    state: State,
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
            state: State::default(),
        }
    }

    /// Forgets the running averages (TinyBERT's second step starts a fresh optimiser).
    pub fn reset(&mut self) {
        self.updates = 0;
        self.state = State::default();
    }

    /// Applies one update to every parameter of `module` that has an accumulated gradient;
    /// `scale` (one element, on the device) multiplies the summed gradients.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: &FlatGrads,
        lr: f64,
        scale: Tensor<1>,
    ) -> M {
        self.updates += 1;
        let mut moments = self.take_moments(grads);
        let t = self.updates as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        // torch's form: the bias corrections folded into the denominator and the step size.
        let root_c2 = (1.0 - b2.powi(t)).sqrt();
        let step_size = lr / (1.0 - b1.powi(t));
        let mut steps = Vec::with_capacity(grads.sums.len());
        for (grad, m) in grads.sums.iter().zip(moments.iter_mut()) {
            let grad = grad.clone() * scale.clone();
            m.first = m.first.clone() * b1 + grad.clone() * (1.0 - b1);
            m.second = m.second.clone() * b2 + grad.square() * (1.0 - b2);
            let denominator = m.second.clone().sqrt() / root_c2 + self.epsilon;
            steps.push(m.first.clone() / denominator * step_size);
        }
        self.state.flat = Some((grads.groups.clone(), moments));
        let mut update = Update {
            path: Vec::new(),
            slots: slot_index(&grads.groups),
            decays: grads.groups.iter().map(|g| g.decays).collect(),
            steps,
            decay: 1.0 - lr * self.weight_decay,
        };
        module.map(&mut update)
    }

    /// The flat moments for `grads`' layout, taken out of the state (so that the update may
    /// reuse their buffers): the last step's when the layout is the same, otherwise gathered by
    /// path (zeros for a parameter seen for the first time).
    fn take_moments(&mut self, grads: &FlatGrads) -> Vec<Moments> {
        match self.state.flat.take() {
            Some((groups, moments)) if groups == grads.groups => return moments,
            Some((groups, moments)) => {
                let named = sliced(&groups, &moments).collect::<Vec<_>>();
                self.state.named.extend(named);
            }
            None => {}
        }
        let named = &mut self.state.named;
        let device = &grads.device;
        let gather = |group: &Group| {
            let parts = group.slots.iter().map(|slot| {
                (named.remove(&slot.path)).unwrap_or_else(|| Moments::zeros(slot.len, device))
            });
            Moments::cat(parts.collect())
        };
        grads.groups.iter().map(gather).collect()
    }

    /// The state as named flat f32 tensors (`<path>.exp_avg`, `<path>.exp_avg_sq`).
    pub fn state_tensors(&self) -> Result<Vec<(String, Vec<f32>)>, String> {
        let named = self.state.all_named();
        let mut out = Vec::with_capacity(2 * named.len());
        for (path, m) in named {
            out.push((format!("{path}.exp_avg"), read_f32(m.first)?));
            out.push((format!("{path}.exp_avg_sq"), read_f32(m.second)?));
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
        let mut named = BTreeMap::new();
        for (path, first) in firsts {
            let second = seconds
                .remove(&path)
                .ok_or_else(|| format!("optimizer state of {path} lacks exp_avg_sq"))?;
            named.insert(path, Moments { first, second });
        }
        if let Some(path) = seconds.keys().next() {
            return Err(format!("optimizer state of {path} lacks exp_avg"));
        }
        self.state.named = named;
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
fn decays(path: &str) -> bool {
    !matches!(path.rsplit('.').next(), Some("bias" | "beta" | "gamma"))
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

    /// The sums laid out flat, the decayed parameters in one vector and the others in another.
    pub fn flatten(&self, device: &Device) -> FlatGrads {
        let mut groups = Vec::new();
        let mut sums = Vec::new();
        for group_decays in [true, false] {
            let members: Vec<_> = (self.sums.iter())
                .filter(|(path, _)| decays(path) == group_decays)
                .collect();
            if members.is_empty() {
                continue;
            }
            let mut offset = 0;
            let slots = (members.iter())
                .map(|(path, sum)| {
                    let len = sum.dims()[0];
                    offset += len;
                    Slot {
                        path: path.to_string(),
                        offset: offset - len,
                        len,
                    }
                })
                .collect();
            groups.push(Group {
                decays: group_decays,
                slots,
            });
            sums.push(Tensor::cat(
                members.into_iter().map(|(_, s)| s.clone()).collect(),
                0,
            ));
        }
        FlatGrads {
            groups,
            sums,
            micro_batches: self.micro_batches,
            device: device.clone(),
        }
    }

    pub fn clear(&mut self) {
        self.sums.clear();
        self.micro_batches = 0;
    }
}

/// One step's summed gradients, flat per parameter group ([`AccumulatedGrads::flatten`]).
#[derive(Debug)]
pub struct FlatGrads {
    groups: Vec<Group>,
    sums: Vec<Tensor<1>>,
    micro_batches: usize,
    device: Device,
}

impl FlatGrads {
    /// The L2 norm of the mean gradient over all parameters, left on the device (one element;
    /// 0 without gradients).
    pub fn global_norm(&self) -> Tensor<1> {
        let squares = (self.sums.iter())
            .map(|g| g.clone().square().sum())
            .reduce(|a, b| a + b);
        match squares {
            Some(squares) => squares.sqrt() / self.micro_batches.max(1) as f64,
            None => Tensor::zeros([1], &self.device),
        }
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

/// Applies each group's step to the parameters, by their slots.
struct Update {
    path: Vec<String>,
    /// Parameter path -> (its group's index, its slot).
    slots: BTreeMap<String, (usize, Slot)>,
    steps: Vec<Tensor<1>>,
    /// Whether each group's parameters are decayed.
    decays: Vec<bool>,
    /// What multiplies a decayed parameter before the step: 1 - lr x weight decay.
    decay: f64,
}

fn slot_index(groups: &[Group]) -> BTreeMap<String, (usize, Slot)> {
    let by_group = groups.iter().enumerate();
    by_group
        .flat_map(|(i, g)| {
            g.slots
                .iter()
                .map(move |s| (s.path.clone(), (i, s.clone())))
        })
        .collect()
}

impl ModuleMapper for Update {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let Some((group, slot)) = self.slots.get(&path) else {
            return param;
        };
        let step = (self.steps[*group].clone()).slice([slot.range()]);
        let decay = self.decays[*group].then_some(self.decay);
        param.map(|value| {
            let require_grad = value.is_require_grad();
            let dims = value.dims();
            let flat = value.inner().reshape([slot.len]);
            let flat = match decay {
                Some(decay) => flat * decay,
                None => flat,
            };
            let updated = (flat - step).reshape(dims).autodiff();
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
            sums: BTreeMap::from([
                ("w".to_string(), Tensor::<1>::from_floats([6.0], &device)),
                (
                    "b.bias".to_string(),
                    Tensor::<1>::from_floats([8.0], &device),
                ),
            ]),
            micro_batches: 2,
        }
        .flatten(&device);
        let norm = acc.global_norm();
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
        let plain = Device::flex();
        let device = plain.clone().autodiff();
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
        let flat = acc.flatten(&plain);
        let norm = flat.global_norm();
        let linear = opt.step(linear, &flat, lr, flat.scale(&norm, 0.0));
        let w: Vec<f32> = linear.weight.val().into_data().try_into_vec().unwrap();
        assert!((w[0] - (1.0 * 0.95 - 0.1)).abs() < 1e-6, "{w:?}");
        assert!((w[1] - (-2.0 * 0.95 - 0.1)).abs() < 1e-6, "{w:?}");
        let b = linear.bias.as_ref().unwrap().val().into_scalar::<f32>();
        assert!((b - (bias_before - 0.1)).abs() < 1e-6);
        assert!(linear.weight.val().is_require_grad());
        let state = opt.state_tensors().unwrap();
        assert_eq!(state.len(), 4);
        assert_eq!(state[0].0, "bias.exp_avg");
        // A step without gradients leaves the averages alone.
        let empty = AccumulatedGrads::default().flatten(&plain);
        let _ = opt.step(linear, &empty, lr, empty.scale(&empty.global_norm(), 0.0));
        assert_eq!(opt.state_tensors().unwrap(), state);
    }
}
