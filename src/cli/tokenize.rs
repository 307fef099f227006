//! `phiq tokenize -m FILE [--ids] [--pieces] [--special] [--file PATH | TEXT]` and
//! `phiq detokenize -m FILE [--special] IDS...`

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use phiq::gguf::GgufFile;
use phiq::{Error, Tokenizer};

use super::common::ModelSource;

#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// The model (or vocab-only GGUF) whose tokenizer to use.
    #[command(flatten)]
    source: ModelSource,
    /// Print exactly one JSON array of ids, e.g. [9906, 11, 1917], and nothing else.
    #[arg(long, conflicts_with = "pieces")]
    ids: bool,
    /// Print one line per token: the id and its decoded text as a JSON string.
    #[arg(long)]
    pieces: bool,
    /// Turn control-token text such as <|im_end|> into its id (as chat templates need);
    /// without it such text is encoded as plain text.
    #[arg(long)]
    special: bool,
    /// Tokenize this file's bytes exactly as they are ("-" reads standard input).
    #[arg(short = 'f', long, value_name = "PATH", conflicts_with = "text")]
    file: Option<PathBuf>,
    /// The text to tokenize.
    #[arg(required_unless_present = "file")]
    text: Option<String>,
}

#[derive(clap::Args)]
pub struct DetokenizeArgs {
    /// The model (or vocab-only GGUF) whose tokenizer to use.
    #[command(flatten)]
    source: ModelSource,
    /// Show control tokens (<|im_end|>, ...) as their text.
    #[arg(long)]
    special: bool,
    /// Token ids: separate arguments, or a list such as "[9906, 11, 1917]"; none: read
    /// them from standard input (so `phiq tokenize --ids TEXT | phiq detokenize` works).
    #[arg(num_args = 0..)]
    ids: Vec<String>,
}

fn load(source: &ModelSource) -> phiq::Result<Tokenizer> {
    let file = GgufFile::open(source.path()?)?;
    Tokenizer::from_gguf(&file)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
fn emit(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

fn read_input(args: &TokenizeArgs) -> phiq::Result<String> {
    let (bytes, name) = match (&args.file, &args.text) {
        (Some(path), _) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| Error::Io {
                    path: path.clone(),
                    source: e,
                })?;
            (buf, "standard input".to_string())
        }
        (Some(path), _) => {
            let bytes = std::fs::read(path).map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            (bytes, path.display().to_string())
        }
        (None, Some(text)) => return Ok(text.clone()),
        (None, None) => {
            return Err(Error::InvalidInput(
                "give the text to tokenize, or --file PATH".into(),
            ))
        }
    };
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Error::InvalidFile(format!(
            "{name}: not valid UTF-8 (invalid byte sequence at byte offset {at})"
        ))
    })
}

pub fn run_tokenize(args: TokenizeArgs) -> phiq::Result<()> {
    let text = read_input(&args)?;
    let tokenizer = load(&args.source)?;
    let ids = tokenizer.encode(&text, true, args.special);
    let mut out = String::new();
    if args.ids {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        out.push('[');
        out.push_str(&list.join(", "));
        out.push_str("]\n");
    } else {
        for &id in &ids {
            let piece = tokenizer.token_piece(id).unwrap_or_default();
            let piece = serde_json::to_string(&piece).unwrap_or_default();
            out.push_str(&format!("{id:>7} {piece}\n"));
        }
        if !args.pieces {
            out.push_str(&format!("{} tokens\n", ids.len()));
        }
    }
    emit(out.as_bytes());
    Ok(())
}

/// Ids from arguments like `9906`, `9906,11`, `[9906, 11, 1917]` (what `tokenize --ids`
/// prints).
pub fn parse_ids(args: &[String]) -> phiq::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for arg in args {
        for part in arg
            .split(|c: char| c == ',' || c == '[' || c == ']' || c.is_whitespace())
            .filter(|p| !p.is_empty())
        {
            let id = part.parse::<u32>().map_err(|_| {
                Error::InvalidInput(format!("'{part}' is not a token id (a number >= 0)"))
            })?;
            ids.push(id);
        }
    }
    Ok(ids)
}

pub fn run_detokenize(args: DetokenizeArgs) -> phiq::Result<()> {
    let ids = if args.ids.is_empty() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::Io {
                path: "standard input".into(),
                source: e,
            })?;
        parse_ids(&[text])?
    } else {
        parse_ids(&args.ids)?
    };
    if ids.is_empty() {
        return Err(Error::InvalidInput(
            "no token ids: give them as arguments or on standard input".into(),
        ));
    }
    let tokenizer = load(&args.source)?;
    let mut bytes = tokenizer.decode_bytes(&ids, args.special)?;
    // The exact bytes in a pipe; a final newline for a person at a terminal.
    if std::io::stdout().is_terminal() {
        bytes.push(b'\n');
    }
    emit(&bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists() {
        let args: Vec<String> = ["[9906, 11,", "1917]", "5"].map(String::from).to_vec();
        assert_eq!(parse_ids(&args).unwrap(), [9906, 11, 1917, 5]);
        assert!(parse_ids(&["-1".to_string()]).is_err());
        assert!(parse_ids(&["abc".to_string()]).is_err());
    }
}
