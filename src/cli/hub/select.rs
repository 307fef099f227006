//! Which `.gguf` file of a repository a `REPO[:QUANT]` names.
//!
//! llama.cpp's rule (common/download.cpp, `find_best_model`): the quant tag, compared
//! case-insensitively, followed by `.` or `-` in the file's path (`phi-4-Q4_K_M.gguf`,
//! `phi-4.Q4_K_M.gguf`, `Q4_K_M/phi-4-Q4_K_M-00001-of-00002.gguf`); without a tag, Q4_K_M,
//! then Q8_0, then the only model file. Files that are not models (`mmproj`, `imatrix`)
//! are skipped. Two differences, to be predictable: the tag must also start the match at a
//! separator (so `Q4_XS` does not pick `IQ4_XS`), and several matches are an error listing
//! them rather than the first one in the hub's order.
//!
//! Split models (`NAME-00001-of-00003.gguf`) are found but refused: phiq maps one file.

use super::HfSpec;

/// One file of a repository, as the hub's tree API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoFile {
    /// The path inside the repository, `/`-separated.
    pub path: String,
    /// Bytes (the LFS object's size for LFS files).
    pub size: u64,
    /// The LFS object id: the sha256 of the content, lowercase hex. `None` for files kept
    /// in git itself (the hub gives only their git blob id).
    pub sha256: Option<String>,
}

/// Why no single file was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// No model `.gguf` matches (the list holds every `.gguf` of the repository).
    NotFound { available: Vec<RepoFile> },
    /// Several model files match the tag.
    Ambiguous { matches: Vec<RepoFile> },
    /// The match is one part of a split model.
    Split { first: RepoFile, count: u32 },
}

impl SelectError {
    /// The message for the user: what was looked for, and what the repository holds.
    pub fn message(&self, spec: &HfSpec) -> String {
        let list = |files: &[RepoFile]| -> String {
            files
                .iter()
                .map(|f| format!("\n  {} ({})", f.path, super::human_bytes(f.size)))
                .collect()
        };
        let wanted = match (&spec.file, &spec.quant) {
            (Some(file), _) => format!("the file '{file}'"),
            (None, Some(q)) => format!("a GGUF file for quant '{q}'"),
            (None, None) => format!(
                "a GGUF file for the default quant ({}), nor a single model file",
                super::DEFAULT_QUANTS.join(", then ")
            ),
        };
        match self {
            SelectError::NotFound { available } if available.is_empty() => format!(
                "{}: the repository has no .gguf file (phiq runs GGUF models; look for a repository named like '...-GGUF')",
                spec.repo
            ),
            SelectError::NotFound { available } => format!(
                "{}: no {wanted} (the tag is matched in the file name, case-insensitively); the .gguf files there:{}\nchoose one with {}:QUANT",
                spec.repo,
                list(available),
                spec.repo
            ),
            SelectError::Ambiguous { matches } => format!(
                "{}: {} files match {wanted}:{}\nname one with --hf-file FILE",
                spec.repo,
                matches.len(),
                list(matches)
            ),
            SelectError::Split { first, count } => format!(
                "{}: {} is split into {count} files; phiq reads single-file GGUF models only. Merge the parts with llama.cpp's `llama-gguf-split --merge {} merged.gguf` and run that with -m, or choose a quant stored as one file",
                spec.repo, first.path, first.path
            ),
        }
    }
}

fn is_gguf(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".gguf")
}

/// A `.gguf` that is a model (not a projector or an importance matrix).
pub fn is_model_gguf(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    name.ends_with(".gguf") && !name.contains("mmproj") && !name.contains("imatrix")
}

/// `(index, count)` of a split file `...-00001-of-00003.gguf` (1-based), `None` for a
/// single file.
pub fn split_part(path: &str) -> Option<(u32, u32)> {
    let stem = path.strip_suffix(".gguf")?;
    // "-00001-of-00003": 5 digits, "-of-", 5 digits, as gguf-split names them.
    let tail = stem.get(stem.len().checked_sub(15)?..)?;
    let b = tail.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b[0] != b'-' || !digits(1..6) || &tail[6..10] != "-of-" || !digits(10..15) {
        return None;
    }
    Some((tail[1..6].parse().ok()?, tail[10..15].parse().ok()?))
}

/// The quant tag of a file name as `phiq list` shows it: the last `-` or `.` separated
/// word of the name before `.gguf` (and before a split suffix), uppercased:
/// `phi-4-Q4_K_M.gguf` → `Q4_K_M`.
pub fn quant_tag(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut stem = name.strip_suffix(".gguf")?;
    if split_part(name).is_some() {
        stem = &stem[..stem.len() - 15];
    }
    let tag = stem.rsplit(['-', '.']).next()?;
    (tag.len() < stem.len() && !tag.is_empty()).then(|| tag.to_ascii_uppercase())
}

/// The tag occurs in `path`, case-insensitively, after the start or a character that is
/// not a letter or digit, and before `.` or `-`.
pub fn matches_quant(path: &str, quant: &str) -> bool {
    let p = path.to_ascii_lowercase();
    let q = quant.to_ascii_lowercase();
    let bytes = p.as_bytes();
    p.match_indices(&q).any(|(i, _)| {
        let before_ok = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let after_ok = matches!(bytes.get(i + q.len()), Some(b'.' | b'-'));
        before_ok && after_ok
    })
}

/// The file of `files` that `spec` names (see the module comment).
pub fn select<'a>(files: &'a [RepoFile], spec: &HfSpec) -> Result<&'a RepoFile, SelectError> {
    let ggufs: Vec<RepoFile> = files.iter().filter(|f| is_gguf(&f.path)).cloned().collect();
    let chosen = if let Some(name) = &spec.file {
        // Only a .gguf: the rest of a repository (README, config) is not a model.
        files
            .iter()
            .find(|f| f.path.eq_ignore_ascii_case(name) && is_gguf(&f.path))
            .ok_or(SelectError::NotFound {
                available: ggufs.clone(),
            })?
    } else {
        // Model files, with a split model counted once (its first part).
        let models: Vec<&RepoFile> = files
            .iter()
            .filter(|f| is_model_gguf(&f.path))
            .filter(|f| split_part(&f.path).is_none_or(|(i, _)| i == 1))
            .collect();
        let tags: Vec<&str> = match &spec.quant {
            Some(q) => vec![q.as_str()],
            None => super::DEFAULT_QUANTS.to_vec(),
        };
        let mut found = None;
        for tag in tags {
            let hits: Vec<&RepoFile> = models
                .iter()
                .copied()
                .filter(|f| matches_quant(&f.path, tag))
                .collect();
            match hits.as_slice() {
                [] => continue,
                [one] => {
                    found = Some(*one);
                    break;
                }
                many => {
                    return Err(SelectError::Ambiguous {
                        matches: many.iter().map(|f| (*f).clone()).collect(),
                    })
                }
            }
        }
        match (found, spec.quant.is_none(), models.as_slice()) {
            (Some(f), _, _) => f,
            // No tag and no default quant: the repository's only model, if it has one.
            (None, true, [only]) => only,
            _ => return Err(SelectError::NotFound { available: ggufs }),
        }
    };
    if let Some((_, count)) = split_part(&chosen.path).filter(|&(_, n)| n > 1) {
        return Err(SelectError::Split {
            first: chosen.clone(),
            count,
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<RepoFile> {
        paths
            .iter()
            .map(|p| RepoFile {
                path: p.to_string(),
                size: 1,
                sha256: None,
            })
            .collect()
    }

    fn pick(paths: &[&str], spec: &str) -> Result<String, SelectError> {
        let fs = files(paths);
        select(&fs, &HfSpec::parse(spec).unwrap()).map(|f| f.path.clone())
    }

    const BARTOWSKI: &[&str] = &[
        ".gitattributes",
        "README.md",
        "phi-4-IQ4_XS.gguf",
        "phi-4-Q4_K_M.gguf",
        "phi-4-Q4_K_S.gguf",
        "phi-4-Q8_0.gguf",
        "phi-4-f16.gguf",
        "phi-4.imatrix",
    ];

    #[test]
    fn quant_tags_as_llama_cpp_matches_them() {
        assert_eq!(
            pick(BARTOWSKI, "b/phi-4-GGUF:Q4_K_M").unwrap(),
            "phi-4-Q4_K_M.gguf"
        );
        assert_eq!(
            pick(BARTOWSKI, "b/phi-4-GGUF:q4_k_m").unwrap(),
            "phi-4-Q4_K_M.gguf"
        );
        assert_eq!(
            pick(BARTOWSKI, "b/phi-4-GGUF:F16").unwrap(),
            "phi-4-f16.gguf"
        );
        // Without a tag: Q4_K_M first.
        assert_eq!(
            pick(BARTOWSKI, "b/phi-4-GGUF").unwrap(),
            "phi-4-Q4_K_M.gguf"
        );
        // A tag is a whole word: Q4_XS is not IQ4_XS, Q4_K is not Q4_K_M.
        assert!(matches!(
            pick(BARTOWSKI, "b/phi-4-GGUF:Q4_XS"),
            Err(SelectError::NotFound { .. })
        ));
        assert!(pick(BARTOWSKI, "b/phi-4-GGUF:Q4_K").is_err());
        // TheBloke's "name.Q4_K_M.gguf".
        assert_eq!(
            pick(&["m.Q4_K_M.gguf", "m.Q5_K_M.gguf"], "a/b:Q5_K_M").unwrap(),
            "m.Q5_K_M.gguf"
        );
        // No default quant: the only model (an mmproj does not count), else an error.
        assert_eq!(
            pick(&["model-F16.gguf", "mmproj-F16.gguf"], "a/b").unwrap(),
            "model-F16.gguf"
        );
        assert!(pick(&["m-F16.gguf", "m-BF16.gguf"], "a/b").is_err());
        // Several matches: an error listing them.
        let e = pick(&["x-Q8_0.gguf", "y/x-Q8_0.gguf"], "a/b:Q8_0").unwrap_err();
        assert!(matches!(e, SelectError::Ambiguous { ref matches } if matches.len() == 2));
    }

    #[test]
    fn missing_quant_lists_the_gguf_files() {
        let spec = HfSpec::parse("b/phi-4-GGUF:Q3_K_XL").unwrap();
        let fs = files(BARTOWSKI);
        let msg = select(&fs, &spec).unwrap_err().message(&spec);
        assert!(msg.contains("'Q3_K_XL'"), "{msg}");
        assert!(
            msg.contains("phi-4-Q8_0.gguf") && msg.contains("phi-4-IQ4_XS.gguf"),
            "{msg}"
        );
        assert!(!msg.contains("README.md"), "{msg}");
    }

    #[test]
    fn split_models_are_refused_clearly() {
        let fs = files(&[
            "Q8_0/phi-4-Q8_0-00001-of-00002.gguf",
            "Q8_0/phi-4-Q8_0-00002-of-00002.gguf",
        ]);
        assert_eq!(split_part(&fs[1].path), Some((2, 2)));
        let spec = HfSpec::parse("a/b:Q8_0").unwrap();
        let e = select(&fs, &spec).unwrap_err();
        assert!(matches!(e, SelectError::Split { count: 2, .. }));
        assert!(e.message(&spec).contains("llama-gguf-split --merge"));
    }

    #[test]
    fn hf_file_names_a_file() {
        let fs = files(BARTOWSKI);
        let spec = HfSpec::parse("b/p")
            .unwrap()
            .with_file(Some("PHI-4-Q8_0.gguf"));
        assert_eq!(select(&fs, &spec).unwrap().path, "phi-4-Q8_0.gguf");
        for other in ["nope.gguf", "README.md"] {
            let spec = HfSpec::parse("b/p").unwrap().with_file(Some(other));
            assert!(select(&fs, &spec).is_err(), "{other}");
        }
    }

    #[test]
    fn tags_of_file_names() {
        assert_eq!(quant_tag("phi-4-Q4_K_M.gguf").as_deref(), Some("Q4_K_M"));
        assert_eq!(quant_tag("d/phi-4.q8_0.gguf").as_deref(), Some("Q8_0"));
        assert_eq!(
            quant_tag("phi-4-Q8_0-00001-of-00002.gguf").as_deref(),
            Some("Q8_0")
        );
        assert_eq!(quant_tag("model.gguf"), None);
    }
}
