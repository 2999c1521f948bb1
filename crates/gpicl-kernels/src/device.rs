//! Choosing where tensors live.

use crate::error::{KernelError, Result};
use candle_core::Device;

/// Parses a device name as given on the command line.
///
/// Accepted: `cpu` (the default everywhere) and `cuda` / `cuda:N`. CUDA is
/// only available in builds with the `cuda` feature; elsewhere asking for it
/// is a clear error rather than a silent fallback to the CPU.
pub fn parse_device(name: &str) -> Result<Device> {
    let trimmed = name.trim().to_ascii_lowercase();
    if trimmed == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match trimmed.as_str() {
        "cuda" => Some(0usize),
        other => other
            .strip_prefix("cuda:")
            .map(|n| {
                n.parse::<usize>().map_err(|_| KernelError::Device {
                    name: name.to_string(),
                    reason: "expected `cuda:N` with N a GPU index".into(),
                })
            })
            .transpose()?,
    };
    match ordinal {
        None => Err(KernelError::Device {
            name: name.to_string(),
            reason: "expected `cpu`, `cuda` or `cuda:N`".into(),
        }),
        Some(ordinal) => cuda_device(name, ordinal),
    }
}

fn cuda_device(name: &str, ordinal: usize) -> Result<Device> {
    if !candle_core::utils::cuda_is_available() {
        return Err(KernelError::Device {
            name: name.to_string(),
            reason: "this build has no CUDA support; rebuild with `--features cuda`".into(),
        });
    }
    Device::new_cuda(ordinal).map_err(|e| KernelError::Device {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_accepted_in_any_case() {
        assert!(parse_device("CPU").unwrap().is_cpu());
    }

    #[test]
    fn unknown_device_names_are_refused_with_the_name() {
        let err = parse_device("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu"), "{err}");
    }

    #[test]
    fn cuda_without_the_feature_is_an_error_not_a_fallback() {
        if !candle_core::utils::cuda_is_available() {
            assert!(parse_device("cuda:0").is_err());
        }
    }
}
