//! Run-time choice of burn device: `auto` (a hardware GPU through wgpu when there is one, else
//! the CPU), `cpu` (burn's flex backend) or `gpu` (wgpu, any adapter, software ones included).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Gpu,
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            // The browser's name for its GPU.
            "gpu" | "webgpu" => Ok(Self::Gpu),
            other => Err(Error::Input(format!(
                "unknown device \"{other}\": expected auto, cpu or gpu"
            ))),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Gpu,
}

/// A ready device and a sentence saying what it is and why it was picked.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    pub kind: BackendKind,
    /// A GPU adapter that is emulated on the CPU (e.g. Mesa lavapipe).
    pub software: bool,
    pub description: String,
}

impl SelectedDevice {
    /// burn's CPU backend (flex); `reason` is appended to the description.
    pub fn cpu(reason: &str) -> Self {
        Self {
            device: Device::flex(),
            kind: BackendKind::Cpu,
            software: false,
            description: format!("cpu (burn flex){reason}"),
        }
    }
}

/// What is known about the GPU adapter when the device is chosen: found (and whether it is a
/// software emulation such as Mesa lavapipe or Chromium's SwiftShader), or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterFacts {
    Found { software: bool, description: String },
    Missing(String),
}

/// The decision of [`choose`]: the kind of backend, and for the CPU the reason when a GPU
/// was possible (empty when the CPU was asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub kind: BackendKind,
    pub reason: String,
}

/// The device policy, the same natively and in the browser: `cpu` is the CPU; `gpu` is any
/// adapter, software ones included, and an error without one; `auto` is a hardware adapter,
/// else the CPU with the reason (a software adapter is far slower than the CPU backend).
pub fn choose(request: DeviceChoice, adapter: &AdapterFacts) -> Result<Decision, Error> {
    let cpu = |reason: String| {
        Ok(Decision {
            kind: BackendKind::Cpu,
            reason,
        })
    };
    let gpu = Decision {
        kind: BackendKind::Gpu,
        reason: String::new(),
    };
    match (request, adapter) {
        (DeviceChoice::Cpu, _) => cpu(String::new()),
        (DeviceChoice::Gpu, AdapterFacts::Found { .. }) => Ok(gpu),
        (DeviceChoice::Gpu, AdapterFacts::Missing(why)) => {
            Err(Error::Device(format!("the GPU was asked for: {why}")))
        }
        (
            DeviceChoice::Auto,
            AdapterFacts::Found {
                software: false, ..
            },
        ) => Ok(gpu),
        (DeviceChoice::Auto, AdapterFacts::Found { description, .. }) => cpu(format!(
            "; auto skipped the only GPU adapter, {description}, as slower than the CPU backend"
        )),
        (DeviceChoice::Auto, AdapterFacts::Missing(why)) => cpu(format!("; no GPU: {why}")),
    }
}

/// Picks the device for `choice` by [`choose`]. Never panics when there is no GPU: `auto`
/// falls back to the CPU and says so, `gpu` is an error.
pub fn select_device(choice: DeviceChoice) -> Result<SelectedDevice, Error> {
    if choice == DeviceChoice::Cpu {
        return Ok(SelectedDevice::cpu(""));
    }
    let adapter = gpu::adapter();
    let facts = match &adapter {
        Ok(gpu) => AdapterFacts::Found {
            software: gpu.software,
            description: gpu.description.clone(),
        },
        Err(why) => AdapterFacts::Missing(why.clone()),
    };
    let decision = choose(choice, &facts)?;
    match (decision.kind, adapter) {
        (BackendKind::Gpu, Ok(gpu)) => Ok(gpu),
        _ => Ok(SelectedDevice::cpu(&decision.reason)),
    }
}

#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
mod gpu {
    use std::sync::OnceLock;

    use burn::tensor::Device;
    use burn::tensor::wgpu::wgpu::DeviceType;

    use super::{BackendKind, SelectedDevice};

    /// burn registers a wgpu runtime once per process, so the first outcome is kept.
    static ADAPTER: OnceLock<Result<SelectedDevice, String>> = OnceLock::new();

    pub fn adapter() -> Result<SelectedDevice, String> {
        ADAPTER
            .get_or_init(|| {
                let (device, setup): (Device, _) = Device::wgpu_options()
                    .init_with_setup()
                    .map_err(|e| format!("no usable wgpu adapter ({e})"))?;
                let info = setup.adapter.get_info();
                let software = matches!(info.device_type, DeviceType::Cpu);
                Ok(SelectedDevice {
                    device,
                    kind: BackendKind::Gpu,
                    software,
                    description: format!(
                        "gpu (burn wgpu, {:?}): {}{}",
                        info.backend,
                        info.name,
                        if software { ", a software adapter" } else { "" }
                    ),
                })
            })
            .clone()
    }
}

#[cfg(not(all(feature = "gpu", not(target_arch = "wasm32"))))]
mod gpu {
    use super::SelectedDevice;

    pub fn adapter() -> Result<SelectedDevice, String> {
        Err("this build of tinyrank has no GPU backend (build with the `gpu` feature)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_in_every_case() {
        let hardware = AdapterFacts::Found {
            software: false,
            description: "H200".into(),
        };
        let software = AdapterFacts::Found {
            software: true,
            description: "lavapipe".into(),
        };
        let missing = AdapterFacts::Missing("no adapter".into());
        let kind = |request, facts: &AdapterFacts| choose(request, facts).map(|d| d.kind).ok();
        use BackendKind::{Cpu, Gpu};
        use DeviceChoice::{Auto, Cpu as AskCpu, Gpu as AskGpu};
        assert_eq!(kind(Auto, &hardware), Some(Gpu));
        assert_eq!(kind(Auto, &software), Some(Cpu));
        assert_eq!(kind(Auto, &missing), Some(Cpu));
        assert_eq!(kind(AskGpu, &software), Some(Gpu));
        assert_eq!(kind(AskGpu, &missing), None);
        assert_eq!(kind(AskCpu, &hardware), Some(Cpu));
        let reason = choose(Auto, &software).unwrap().reason;
        assert!(reason.contains("lavapipe"), "{reason}");
    }
}
