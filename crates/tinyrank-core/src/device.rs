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
            "gpu" => Ok(Self::Gpu),
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

fn cpu(reason: &str) -> SelectedDevice {
    SelectedDevice {
        device: Device::flex(),
        kind: BackendKind::Cpu,
        software: false,
        description: format!("cpu (burn flex){reason}"),
    }
}

/// Picks the device for `choice`. Never panics when there is no GPU: `auto` falls back to the
/// CPU and says so, `gpu` is an error.
pub fn select_device(choice: DeviceChoice) -> Result<SelectedDevice, Error> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu("")),
        DeviceChoice::Gpu => match gpu::adapter()? {
            Ok(gpu) => Ok(gpu),
            Err(why) => Err(Error::Device(format!("--device gpu: {why}"))),
        },
        DeviceChoice::Auto => match gpu::adapter()? {
            Ok(gpu) if !gpu.software => Ok(gpu),
            Ok(gpu) => Ok(cpu(&format!(
                "; auto skipped the only GPU adapter, {}, as slower than the CPU backend",
                gpu.description
            ))),
            Err(why) => Ok(cpu(&format!("; no GPU: {why}"))),
        },
    }
}

#[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
mod gpu {
    use std::sync::OnceLock;

    use burn::tensor::Device;
    use burn::tensor::wgpu::wgpu::DeviceType;

    use super::{BackendKind, SelectedDevice};
    use crate::Error;

    /// burn registers a wgpu runtime once per process, so the first outcome is kept.
    static ADAPTER: OnceLock<Result<SelectedDevice, String>> = OnceLock::new();

    pub fn adapter() -> Result<Result<SelectedDevice, String>, Error> {
        Ok(ADAPTER
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
            .clone())
    }
}

#[cfg(not(all(feature = "gpu", not(target_arch = "wasm32"))))]
mod gpu {
    use super::SelectedDevice;
    use crate::Error;

    pub fn adapter() -> Result<Result<SelectedDevice, String>, Error> {
        Ok(Err(
            "this build of tinyrank has no GPU backend (build with the `gpu` feature)".into(),
        ))
    }
}
