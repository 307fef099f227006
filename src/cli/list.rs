//! `phiq list` and `phiq rm NAME`: the models in the cache (see `hub::cache`).

use std::io::Write;

use super::hub::cache::Cache;
use super::hub::human_bytes;

#[derive(clap::Args)]
pub struct ListArgs {}

#[derive(clap::Args)]
pub struct RmArgs {
    /// The model to remove, as `phiq list` names it (OWNER/REPO:QUANT, OWNER/REPO/FILE, the
    /// file name or its stem). Its partial download, if any, goes too.
    #[arg(value_name = "NAME")]
    name: String,
}

pub fn run_list(_args: ListArgs) -> phiq::Result<()> {
    let cache = Cache::open()?;
    let entries = cache.entries()?;
    if entries.is_empty() {
        eprintln!(
            "phiq: no models in {} (`phiq pull REPO[:QUANT]` downloads one, e.g. bartowski/phi-4-GGUF:Q4_K_M)",
            cache.models.display()
        );
        return Ok(());
    }
    let rows: Vec<[String; 3]> = entries
        .iter()
        .map(|e| {
            let size = match (e.size, e.partial) {
                (Some(n), None) => human_bytes(n),
                (size, Some(p)) => {
                    let of = e
                        .expected_size
                        .map_or(String::new(), |t| format!(" of {}", human_bytes(t)));
                    let done = size.map_or(String::new(), |n| format!("{} + ", human_bytes(n)));
                    format!("{done}partial {}{of}", human_bytes(p))
                }
                (None, None) => "?".into(),
            };
            [e.name(&entries), size, e.path.display().to_string()]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(4);
    let (w0, w1) = (width(0), width(1));
    let mut out = format!("{:w0$}  {:w1$}  PATH\n", "NAME", "SIZE");
    for r in &rows {
        out += &format!("{:w0$}  {:w1$}  {}\n", r[0], r[1], r[2]);
    }
    if entries.iter().any(|e| e.partial.is_some()) {
        out += "(a partial download is resumed by `phiq pull` of the same model, removed by `phiq rm`)\n";
    }
    // A closed stdout (`| head`) is not an error worth a message.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

pub fn run_rm(args: RmArgs) -> phiq::Result<()> {
    let cache = Cache::open()?;
    let removed = cache.remove(&args.name)?;
    let what = match (removed.size, removed.partial) {
        (Some(n), None) => human_bytes(n),
        (Some(n), Some(p)) => format!(
            "{} and a partial download of {}",
            human_bytes(n),
            human_bytes(p)
        ),
        (None, Some(p)) => format!("a partial download of {}", human_bytes(p)),
        (None, None) => "nothing".into(),
    };
    eprintln!("phiq: removed {} {} ({what})", removed.repo, removed.file);
    Ok(())
}
