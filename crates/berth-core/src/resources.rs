//! Task sizes: CPU units and MiB, the strings users write for them, and the
//! Fargate table of valid pairs.

/// One row of the Fargate size table: a CPU value and the memory values valid
/// with it.
struct FargateRow {
    cpu: u32,
    memory_min: u32,
    memory_max: u32,
    step: u32,
    /// Exceptions to the arithmetic range (256 CPU allows 512, 1024, 2048).
    explicit: &'static [u32],
}

const FARGATE_TABLE: &[FargateRow] = &[
    FargateRow {
        cpu: 256,
        memory_min: 0,
        memory_max: 0,
        step: 0,
        explicit: &[512, 1024, 2048],
    },
    FargateRow {
        cpu: 512,
        memory_min: 1024,
        memory_max: 4096,
        step: 1024,
        explicit: &[],
    },
    FargateRow {
        cpu: 1024,
        memory_min: 2048,
        memory_max: 8192,
        step: 1024,
        explicit: &[],
    },
    FargateRow {
        cpu: 2048,
        memory_min: 4096,
        memory_max: 16384,
        step: 1024,
        explicit: &[],
    },
    FargateRow {
        cpu: 4096,
        memory_min: 8192,
        memory_max: 30720,
        step: 1024,
        explicit: &[],
    },
    FargateRow {
        cpu: 8192,
        memory_min: 16384,
        memory_max: 61440,
        step: 4096,
        explicit: &[],
    },
    FargateRow {
        cpu: 16384,
        memory_min: 32768,
        memory_max: 122_880,
        step: 8192,
        explicit: &[],
    },
];

impl FargateRow {
    fn allows(&self, memory: u32) -> bool {
        if !self.explicit.is_empty() {
            return self.explicit.contains(&memory);
        }
        (self.memory_min..=self.memory_max).contains(&memory)
            && (memory - self.memory_min).is_multiple_of(self.step)
    }

    fn describe(&self) -> String {
        if self.explicit.is_empty() {
            format!(
                "{} to {} in steps of {}",
                self.memory_min, self.memory_max, self.step
            )
        } else {
            let v: Vec<String> = self.explicit.iter().map(u32::to_string).collect();
            v.join(", ")
        }
    }
}

/// The CPU values Fargate accepts, smallest first.
pub fn fargate_cpu_values() -> Vec<u32> {
    FARGATE_TABLE.iter().map(|r| r.cpu).collect()
}

/// Checks a task-level (cpu, memory) pair against the Fargate table.
///
/// On failure the message says which value is wrong and lists the valid ones.
pub fn check_fargate_size(cpu: u32, memory: u32) -> Result<(), String> {
    let Some(row) = FARGATE_TABLE.iter().find(|r| r.cpu == cpu) else {
        let valid: Vec<String> = fargate_cpu_values().iter().map(u32::to_string).collect();
        return Err(format!(
            "cpu {cpu} is not a Fargate task size (valid cpu values: {})",
            valid.join(", ")
        ));
    };
    if row.allows(memory) {
        Ok(())
    } else {
        Err(format!(
            "memory {memory} is not valid with cpu {cpu} (valid: {})",
            row.describe()
        ))
    }
}

/// The smallest valid Fargate pair that holds `cpu` units and `memory` MiB
/// (how a Kubernetes pod's requests are rounded up).
pub fn smallest_fargate_size(cpu: u32, memory: u32) -> Option<(u32, u32)> {
    let mut best: Option<(u32, u32)> = None;
    for row in FARGATE_TABLE.iter().filter(|r| r.cpu >= cpu) {
        let candidates: Vec<u32> = if row.explicit.is_empty() {
            (row.memory_min..=row.memory_max)
                .step_by(row.step as usize)
                .collect()
        } else {
            row.explicit.to_vec()
        };
        if let Some(m) = candidates.into_iter().find(|m| *m >= memory) {
            let better = match best {
                None => true,
                Some((_, bm)) => m < bm,
            };
            if better {
                best = Some((row.cpu, m));
            }
        }
    }
    best
}

/// Parses a task-level CPU string: `"1024"` (units), `"1 vCPU"`, `"0.25 vcpu"`.
/// Returns CPU units (1 vCPU = 1024 units).
pub fn parse_cpu(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (number, per_unit) = if let Some(n) = lower.strip_suffix("vcpu") {
        (n.trim(), 1024.0)
    } else {
        (lower.as_str(), 1.0)
    };
    let value = parse_number(number, per_unit).ok_or_else(|| {
        format!("cpu {s:?} is not a number of CPU units or a vCPU amount (write \"1024\" or \"1 vCPU\")")
    })?;
    Ok(value)
}

/// Parses a task-level memory string: `"2048"` (MiB), `"2 GB"`, `"2GiB"`,
/// `"512 MiB"`, `"512 MB"`. Returns MiB (1 GB = 1024 MiB, as ECS counts).
pub fn parse_memory(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (number, per_unit) = if let Some(n) = lower
        .strip_suffix("gib")
        .or_else(|| lower.strip_suffix("gb"))
    {
        (n.trim(), 1024.0)
    } else if let Some(n) = lower
        .strip_suffix("mib")
        .or_else(|| lower.strip_suffix("mb"))
    {
        (n.trim(), 1.0)
    } else {
        (lower.as_str(), 1.0)
    };
    parse_number(number, per_unit).ok_or_else(|| {
        format!("memory {s:?} is not a number of MiB or a GB amount (write \"2048\" or \"2 GB\")")
    })
}

fn parse_number(s: &str, per_unit: f64) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    let scaled = v * per_unit;
    if !scaled.is_finite() || scaled < 0.0 || scaled > f64::from(u32::MAX) || scaled.fract() != 0.0
    {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(scaled as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_product_brief() {
        for m in [512, 1024, 2048] {
            assert!(check_fargate_size(256, m).is_ok());
        }
        assert!(check_fargate_size(256, 3072).is_err());
        assert!(check_fargate_size(512, 1024).is_ok());
        assert!(check_fargate_size(512, 4096).is_ok());
        assert!(check_fargate_size(512, 5120).is_err());
        assert!(check_fargate_size(1024, 2048).is_ok());
        assert!(check_fargate_size(1024, 1024).is_err());
        assert!(check_fargate_size(4096, 30720).is_ok());
        assert!(check_fargate_size(8192, 20480).is_ok());
        assert!(check_fargate_size(8192, 17408).is_err());
        assert!(check_fargate_size(16384, 122_880).is_ok());
        assert!(check_fargate_size(16384, 40960).is_ok());
        assert!(check_fargate_size(16384, 36864).is_err());
        assert!(check_fargate_size(300, 512).is_err());
    }

    #[test]
    fn messages_list_valid_values() {
        let e = check_fargate_size(256, 3000).unwrap_err();
        assert_eq!(
            e,
            "memory 3000 is not valid with cpu 256 (valid: 512, 1024, 2048)"
        );
        let e = check_fargate_size(100, 512).unwrap_err();
        assert!(e.contains("256, 512, 1024"), "{e}");
    }

    #[test]
    fn human_strings() {
        assert_eq!(parse_cpu("1024"), Ok(1024));
        assert_eq!(parse_cpu("1 vCPU"), Ok(1024));
        assert_eq!(parse_cpu(".25 vcpu"), Ok(256));
        assert_eq!(parse_cpu("0.5vCPU"), Ok(512));
        assert!(parse_cpu("lots").is_err());
        assert!(parse_cpu("-1").is_err());
        assert_eq!(parse_memory("2 GB"), Ok(2048));
        assert_eq!(parse_memory("0.5GB"), Ok(512));
        assert_eq!(parse_memory("3GiB"), Ok(3072));
        assert_eq!(parse_memory("512"), Ok(512));
        assert_eq!(parse_memory("512 MiB"), Ok(512));
        assert!(parse_memory("1.3 MB").is_err());
    }

    #[test]
    fn rounds_up_to_smallest_pair() {
        assert_eq!(smallest_fargate_size(100, 100), Some((256, 512)));
        assert_eq!(smallest_fargate_size(300, 512), Some((512, 1024)));
        assert_eq!(smallest_fargate_size(256, 3000), Some((512, 3072)));
        assert_eq!(smallest_fargate_size(20000, 1), None);
    }
}
