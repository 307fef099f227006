//! Which instruction set the kernels use, detected once.
//!
//! [`Isa`] can only be made by checking the CPU (`best`, `from_name`), so holding one
//! proves its instructions exist: kernels selected by it may call `#[target_feature]`
//! code. `PHIQ_ISA=scalar|avx2|avxvnni|avx512` forces a path so each one can be tested
//! here; on aarch64 `PHIQ_ISA=scalar|neon`.

use std::fmt;
use std::sync::OnceLock;

/// An instruction-set level the CPU is known to support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa {
    level: Level,
    /// AVX512-BF16 (`vdpbf16ps`) is also present (only meaningful with `Avx512`).
    bf16: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 + FMA + F16C + AVX-VNNI (the 256-bit VEX `vpdpbusd`): Intel Core from the 12th
    /// generation. Kernels without an AVX-VNNI form use AVX2's.
    AvxVnni,
    /// AVX-512 F/BW/VL/VNNI on top of AVX2. (Every AVX-512 CPU phiq meets has AVX-VNNI or
    /// not; the AVX-512 kernels do not need it, so this level does not require it.)
    Avx512,
    /// aarch64: NEON + `dotprod` (`sdot`): ARMv8.2-A and later (Apple M1 onwards,
    /// Snapdragon X, Graviton 2 onwards). Levels are only compared within one architecture
    /// (an `Isa` of another architecture's level cannot be made).
    Neon,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::AvxVnni => "avxvnni",
            Level::Avx512 => "avx512",
            Level::Neon => "neon",
        }
    }
}

fn cpu_supports(level: Level) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        match level {
            Level::Scalar => true,
            Level::Avx2 => has!("avx2") && has!("fma") && has!("f16c"),
            Level::AvxVnni => cpu_supports(Level::Avx2) && has!("avxvnni"),
            Level::Avx512 => {
                cpu_supports(Level::Avx2)
                    && has!("avx512f")
                    && has!("avx512bw")
                    && has!("avx512vl")
                    && has!("avx512vnni")
            }
            Level::Neon => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        match level {
            Level::Scalar => true,
            Level::Neon => has!("neon") && has!("dotprod"),
            _ => false,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        level == Level::Scalar
    }
}

/// The instruction-set features phiq's levels are made of that this CPU reports (as
/// `phiq --version` prints them): on x86-64 AVX/AVX2/FMA/F16C/BMI2, AVX-VNNI and the
/// AVX-512 subsets; on aarch64 NEON, `dotprod` and `i8mm`.
pub fn cpu_features() -> Vec<&'static str> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let all = [
            ("avx", has!("avx")),
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("f16c", has!("f16c")),
            ("bmi2", has!("bmi2")),
            ("avxvnni", has!("avxvnni")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vl", has!("avx512vl")),
            ("avx512vnni", has!("avx512vnni")),
            ("avx512vbmi", has!("avx512vbmi")),
            ("avx512bf16", has!("avx512bf16")),
        ];
        v.extend(all.into_iter().filter(|f| f.1).map(|f| f.0));
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        let all = [
            ("neon", has!("neon")),
            ("dotprod", has!("dotprod")),
            ("i8mm", has!("i8mm")),
        ];
        v.extend(all.into_iter().filter(|f| f.1).map(|f| f.0));
    }
    v
}

fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Isa {
    /// The plain-Rust path, available everywhere.
    pub fn scalar() -> Isa {
        Isa {
            level: Level::Scalar,
            bf16: false,
        }
    }

    /// `level` if this CPU supports it.
    pub fn with_level(level: Level) -> Option<Isa> {
        cpu_supports(level).then(|| Isa {
            level,
            bf16: level == Level::Avx512 && cpu_has_bf16(),
        })
    }

    /// The best level this CPU supports.
    pub fn best() -> Isa {
        [Level::Avx512, Level::AvxVnni, Level::Avx2, Level::Neon]
            .into_iter()
            .find_map(Isa::with_level)
            .unwrap_or_else(Isa::scalar)
    }

    /// The level named `name` ("scalar", "avx2", "avxvnni", "avx512", "neon"), or an error
    /// saying why not.
    pub fn from_name(name: &str) -> Result<Isa, String> {
        let level = match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Level::Scalar,
            "avx2" => Level::Avx2,
            "avxvnni" => Level::AvxVnni,
            "avx512" => Level::Avx512,
            "neon" => Level::Neon,
            other => {
                return Err(format!(
                    "PHIQ_ISA={other:?} is not one of scalar, avx2, avxvnni, avx512, neon"
                ))
            }
        };
        Isa::with_level(level)
            .ok_or_else(|| format!("PHIQ_ISA={name}: this CPU does not support {name}"))
    }

    /// Every level this CPU supports, lowest first (tests run them all).
    pub fn all_supported() -> Vec<Isa> {
        [
            Level::Scalar,
            Level::Avx2,
            Level::AvxVnni,
            Level::Avx512,
            Level::Neon,
        ]
        .into_iter()
        .filter_map(Isa::with_level)
        .collect()
    }

    /// [`Isa::all_supported`] plus each level without its optional extension (AVX512-BF16)
    /// where the CPU has it, so tests also run the kernels a CPU with the plain level
    /// would get.
    pub fn all_variants() -> Vec<Isa> {
        let mut v = Isa::all_supported();
        for isa in v.clone() {
            let plain = Isa { bf16: false, ..isa };
            if plain != isa {
                v.push(plain);
            }
        }
        v
    }

    pub fn level(self) -> Level {
        self.level
    }

    pub fn has_avx512_bf16(self) -> bool {
        self.bf16
    }

    /// The process-wide choice: `PHIQ_ISA` if set, else the best. Decided once.
    pub fn global() -> Result<Isa, String> {
        static CHOICE: OnceLock<Result<Isa, String>> = OnceLock::new();
        CHOICE
            .get_or_init(|| match std::env::var("PHIQ_ISA") {
                Ok(name) if !name.is_empty() => Isa::from_name(&name),
                _ => Ok(Isa::best()),
            })
            .clone()
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.level.name())?;
        if self.bf16 {
            f.write_str("+bf16")?;
        }
        Ok(())
    }
}
