//! The CPU a benchmark or speedrun ran on: its name, threads and SIMD
//! flags from `/proc/cpuinfo`, and the FMA peak the suite measures each
//! shape against.

use serde::Serialize;

/// The CPU the suite ran on.
#[derive(Clone, Debug, Serialize)]
pub struct CpuInfo {
    /// `model name` of `/proc/cpuinfo`.
    pub model: String,
    /// Logical CPUs this process may use.
    pub threads: usize,
    /// The SIMD flags that decide which kernels run.
    pub flags: Vec<String>,
    /// The nominal clock in GHz: the `@ x.xxGHz` of the model name, else
    /// `cpu MHz` (the clock when read).
    pub ghz: Option<f64>,
}

/// Reads [`CpuInfo`] from `/proc/cpuinfo` (`unknown` elsewhere).
pub fn cpu_info() -> CpuInfo {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpu_info_from(&text)
}

pub(crate) fn cpu_info_from(cpuinfo: &str) -> CpuInfo {
    const RELEVANT: [&str; 11] = [
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_bf16",
        "avx512_fp16",
        "avx512_vnni",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    ];
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let flags = field("flags").unwrap_or_default();
    let present: Vec<&str> = flags.split_whitespace().collect();
    let model = field("model name").unwrap_or_else(|| "unknown".to_string());
    let nominal = model
        .rsplit_once('@')
        .and_then(|(_, clock)| clock.trim().strip_suffix("GHz")?.trim().parse::<f64>().ok());
    let current = field("cpu MHz")
        .and_then(|mhz| mhz.parse::<f64>().ok())
        .map(|mhz| mhz / 1e3);
    CpuInfo {
        ghz: nominal.or(current).filter(|g| g.is_finite() && *g > 0.0),
        model,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        flags: RELEVANT
            .iter()
            .filter(|f| present.contains(f))
            .map(|f| f.to_string())
            .collect(),
    }
}

/// The peak of fused multiply-adds the CPU could do on the threads given:
/// `threads × GHz × lanes × 2 FLOP per FMA × FMA units per core`.
#[derive(Clone, Debug, Serialize)]
pub struct FmaPeak {
    /// GFLOP/s.
    pub gflops: f64,
    /// f32 lanes of the widest vectors the kernels use (16 with AVX-512,
    /// 8 with AVX2).
    pub lanes: usize,
    /// FMA units assumed per core: 2 (Zen 3, and the Xeons of Skylake-SP
    /// onwards that these VMs run on; a 1-unit Xeon peaks at half).
    pub fma_units: usize,
    /// The clock used (GHz).
    pub ghz: f64,
    /// Threads counted (one per core on these VMs).
    pub threads: usize,
}

impl FmaPeak {
    /// The assumption, in words, for the suite's header.
    pub fn describe(&self) -> String {
        format!(
            "FMA peak {:.0} GFLOP/s assumed = {} threads × {:.2} GHz × {} f32 lanes × 2 FLOP × {} FMA units",
            self.gflops, self.threads, self.ghz, self.lanes, self.fma_units
        )
    }
}

/// The FMA peak of `cpu` (none when its clock or FMA support is unknown).
pub fn fma_peak(cpu: &CpuInfo) -> Option<FmaPeak> {
    let has = |flag: &str| cpu.flags.iter().any(|f| f == flag);
    let lanes = if has("avx512f") {
        16
    } else if has("avx2") && has("fma") {
        8
    } else {
        return None;
    };
    let ghz = cpu.ghz?;
    let fma_units = 2;
    Some(FmaPeak {
        gflops: cpu.threads as f64 * ghz * lanes as f64 * 2.0 * fma_units as f64,
        lanes,
        fma_units,
        ghz,
        threads: cpu.threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_flags_that_pick_kernels_are_read_from_cpuinfo() {
        let info = cpu_info_from("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 amx_tile amx_bf16\n");
        assert_eq!(info.model, "Intel(R) Xeon(R) Processor");
        assert_eq!(
            info.flags,
            [
                "avx2",
                "fma",
                "avx512f",
                "avx512_bf16",
                "amx_tile",
                "amx_bf16"
            ]
        );
        assert_eq!(cpu_info_from("").model, "unknown");
    }

    #[test]
    fn the_peak_counts_lanes_clock_and_threads_and_needs_a_clock() {
        let zen3 = CpuInfo {
            model: "AMD EPYC 7B13".into(),
            threads: 2,
            flags: vec!["avx2".into(), "fma".into()],
            ghz: cpu_info_from("model name\t: AMD EPYC 7B13\ncpu MHz\t\t: 2450.000\n").ghz,
        };
        // The issue's own figure for the 2-core Zen 3 VM: about 157 GFLOP/s.
        let peak = fma_peak(&zen3).unwrap();
        assert!((peak.gflops - 156.8).abs() < 1e-6, "{peak:?}");
        let xeon = cpu_info_from(
            "model name\t: Intel(R) Xeon(R) Processor @ 2.80GHz\ncpu MHz\t\t: 2793.438\nflags\t\t: avx2 fma avx512f\n",
        );
        assert_eq!(xeon.ghz, Some(2.8));
        let peak = fma_peak(&CpuInfo { threads: 2, ..xeon }).unwrap();
        assert_eq!((peak.lanes, peak.gflops.round()), (16, 358.0));
        assert!(peak.describe().contains("358 GFLOP/s"));
        assert!(fma_peak(&cpu_info_from("")).is_none());
    }
}
