//! One web page captured in a WARC file → a document: the HTTP response is
//! taken apart (status, media type, chunked transfer, content encoding), its
//! bytes are decoded to text by the charset the server or the page declares
//! (or, failing both, the one Mozilla's detector guesses), and an HTML page
//! becomes its main text, extracted by the Rust port of trafilatura: the
//! extractor datatrove runs for FineWeb.
//!
//! What is not a page of text (images, PDFs, redirects, errors, revisits) is
//! not a document: it is skipped, and counted by reason in the ingest
//! manifest (`input_records_skipped`), so `thresher inspect` shows where every
//! record of a crawl went.

use std::borrow::Cow;
use std::io::Read;

use encoding_rs::Encoding;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thresher_stages::Document;

/// How much of the page trafilatura keeps, traded against how much
/// boilerplate slips in ([`trafilatura::ExtractionFocus`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HtmlFocus {
    /// FineWeb's setting (`favour_precision=True` in datatrove): leaves out
    /// more of the doubtful parts.
    #[default]
    Precision,
    Balanced,
    Recall,
}

/// The largest HTML page whose text is extracted, as in Python trafilatura.
const MAX_HTML_BYTES: usize = 20_000_000;

/// What became of one WARC record.
#[derive(Debug)]
pub enum PageOutcome {
    Document(Document),
    /// Not a page of text; the reason is a counter name.
    Skipped(&'static str),
    /// A page that should be readable but is not (malformed HTTP, a broken
    /// compressed body): quarantined with this reason.
    Bad(String),
}

/// Turns WARC records of pages into documents.
pub struct PageReader {
    /// The main extraction, without fallbacks.
    options: trafilatura::Options,
    /// The same with readability and jusText as fallbacks, for the pages
    /// where the main extraction finds too little.
    with_fallback: trafilatura::Options,
    max_body_bytes: usize,
}

/// Whether a WARC record can hold a page: a `response`, `revisit` or
/// `resource` record of a web URL. Others describe the crawl and are passed
/// over: `request`, `metadata` and `warcinfo` records, Heritrix's `dns:`
/// responses, wget's `resource` records of its own log at `metadata://`.
pub fn holds_page(headers: &[(String, String)]) -> bool {
    let web_url = || {
        header(headers, "warc-target-uri").is_none_or(|uri| {
            let uri = uri.trim_start_matches('<').to_ascii_lowercase();
            uri.starts_with("http://") || uri.starts_with("https://")
        })
    };
    matches!(header(headers, "warc-type"), Some("response" | "revisit" | "resource")) && web_url()
}

/// Whether a `response` record's block is an HTTP message (`application/http`,
/// or untyped): otherwise it holds the payload itself, typed by its WARC
/// `Content-Type`.
fn holds_http(headers: &[(String, String)]) -> bool {
    header(headers, "warc-type") == Some("response")
        && header(headers, "content-type").is_none_or(|t| t.trim().to_ascii_lowercase().starts_with("application/http"))
}

impl PageReader {
    pub fn new(focus: HtmlFocus, max_body_bytes: usize) -> Self {
        let focus = match focus {
            HtmlFocus::Precision => trafilatura::ExtractionFocus::FavorPrecision,
            HtmlFocus::Balanced => trafilatura::ExtractionFocus::Balanced,
            HtmlFocus::Recall => trafilatura::ExtractionFocus::FavorRecall,
        };
        // As datatrove's `Trafilatura` step: no comments, repeated paragraphs
        // of a page dropped, readability and jusText as fallbacks. Duplicates
        // are looked for within the page only, so a document's text never
        // depends on which pages a task read before it.
        let options = trafilatura::Options::default()
            .with_focus(focus)
            .with_fallback(false)
            .with_exclude_comments(true)
            .with_deduplicate(true)
            .with_html_date_mode(trafilatura::HtmlDateMode::Disabled);
        Self {
            with_fallback: options.clone().with_fallback(true),
            options,
            max_body_bytes,
        }
    }

    /// The document of one `response`, `resource` or `revisit` record.
    /// `headers` are the WARC headers (names lower-cased); `block` is the
    /// record's content, whole.
    pub fn page(&self, headers: &[(String, String)], block: &[u8]) -> PageOutcome {
        let warc = |name: &str| header(headers, name);
        if warc("warc-type") == Some("revisit") {
            return PageOutcome::Skipped("revisit");
        }
        let in_http = holds_http(headers);
        let (status, http_headers, payload) = if in_http {
            match split_http_response(block) {
                Some(parts) => parts,
                None => return PageOutcome::Bad("response record without an HTTP status line and headers".into()),
            }
        } else {
            // A `resource` record (or a response stored without its HTTP
            // head) holds the page itself, typed by its WARC header.
            (200, Vec::new(), block)
        };
        let http = |name: &str| header(&http_headers, name);
        if !(200..300).contains(&status) {
            return PageOutcome::Skipped(match status {
                300..=399 => "http_redirect",
                400..=499 => "http_client_error",
                500..=599 => "http_server_error",
                _ => "http_other_status",
            });
        }
        let content_type = if in_http {
            http("content-type")
        } else {
            warc("content-type")
        };
        let declared = content_type.map(MediaType::parse);
        // Transfer and content codings first: the payload must be the page's
        // own bytes before anything looks at them.
        let payload = match decode_payload(
            payload,
            http("transfer-encoding"),
            http("content-encoding"),
            self.max_body_bytes,
        ) {
            Ok(payload) => payload,
            Err(reason) => return PageOutcome::Bad(reason),
        };
        let media = match Declared::of(declared.as_ref().map(|m| m.essence.as_str())) {
            Declared::Html => Media::Html,
            Declared::Text => Media::Text,
            // A page that starts like HTML is HTML.
            Declared::Generic if looks_like_html(&payload) => Media::Html,
            _ => return PageOutcome::Skipped("not_html_or_text"),
        };
        let url = warc("warc-target-uri").map(|u| u.trim_start_matches('<').trim_end_matches('>').to_string());
        let declared_charset = declared.as_ref().and_then(|m| m.charset.as_deref());
        let (text, charset) = decode_text(&payload, declared_charset, media == Media::Html, url.as_deref());

        let mut metadata = Map::new();
        for (name, key) in [
            ("warc-date", "warc_date"),
            ("warc-identified-payload-type", "warc_payload_type"),
        ] {
            if let Some(v) = warc(name) {
                metadata.insert(key.into(), Value::from(v));
            }
        }
        metadata.insert("http_status".into(), Value::from(status));
        metadata.insert(
            "content_type".into(),
            Value::from(match media {
                Media::Html => "text/html",
                Media::Text => "text/plain",
            }),
        );
        metadata.insert("charset".into(), Value::from(charset.name().to_ascii_lowercase()));
        let text = match media {
            Media::Text => text.into_owned(),
            // Python trafilatura's limit (`MAX_FILE_SIZE`): a page larger
            // than this is a data dump, not prose, and would hold its task
            // up for long.
            Media::Html if text.len() > MAX_HTML_BYTES => {
                metadata.insert(
                    "html_extraction_error".into(),
                    Value::from(format!(
                        "page of {} bytes is larger than {MAX_HTML_BYTES} bytes",
                        text.len()
                    )),
                );
                String::new()
            }
            Media::Html => match self.extract(&text) {
                Err(panic) => return PageOutcome::Bad(panic),
                Ok(Ok(result)) => {
                    if !result.metadata.title.trim().is_empty() {
                        metadata.insert("title".into(), Value::from(result.metadata.title.trim()));
                    }
                    html_to_text(&result.content_html)
                }
                // Nothing worth keeping (too little text, or not HTML after
                // all): an empty text, which ingest rejects as `empty_text`,
                // with the extractor's reason kept next to it for the audit.
                Ok(Err(e)) => {
                    metadata.insert("html_extraction_error".into(), Value::from(e.to_string()));
                    String::new()
                }
            },
        };
        let id = warc("warc-record-id")
            .unwrap_or_default()
            .trim_start_matches('<')
            .trim_end_matches('>');
        let mut doc = Document::new(id, text);
        doc.url = url;
        doc.metadata = metadata;
        PageOutcome::Document(doc)
    }

    /// trafilatura on one page. The crate is young: a panic in it must not
    /// end the run, so it becomes an error that quarantines the page (raw
    /// bytes kept, for a bug report) instead.
    ///
    /// The fallbacks run only when the main extraction finds less than
    /// trafilatura's `min_extracted_size`: where it finds enough, the port's
    /// comparison with the fallbacks' candidates picks worse text than Python
    /// does (`scripts/bench-warc`, 42 crawled pages: word F1 against Python
    /// 0.83 with the comparison on every page, 0.92 without it), while pages
    /// it finds nothing on need them.
    fn extract(&self, html: &str) -> Result<Result<trafilatura::ExtractResult, trafilatura::TrafilaturaError>, String> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let main = trafilatura::extract(html, &self.options);
            match &main {
                Ok(result) if result.content_text.chars().count() >= self.options.config.min_extracted_size => main,
                _ => trafilatura::extract(html, &self.with_fallback).or(main),
            }
        }))
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            format!("the HTML extractor (trafilatura) failed on this page: {message}")
        })
    }

    /// Whether a record cut at `max_record_bytes` was a page at all: a video
    /// or an archive is skipped as not text, not quarantined as too long.
    pub fn is_page_type(&self, headers: &[(String, String)], block_prefix: &[u8]) -> bool {
        let content_type = if holds_http(headers) {
            match split_http_response(block_prefix) {
                Some((_, http_headers, _)) => header(&http_headers, "content-type").map(str::to_string),
                // Headers longer than the limit: let the caller quarantine it.
                None => return true,
            }
        } else {
            header(headers, "content-type").map(str::to_string)
        };
        let essence = content_type.map(|c| MediaType::parse(&c).essence);
        Declared::of(essence.as_deref()) != Declared::Other
    }
}

/// What a payload's declared media type says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    Html,
    Text,
    /// No type, or one that says nothing (`application/octet-stream`): the
    /// bytes decide.
    Generic,
    Other,
}

impl Declared {
    fn of(essence: Option<&str>) -> Self {
        match essence {
            Some("text/html" | "application/xhtml+xml") => Declared::Html,
            Some("text/plain") => Declared::Text,
            None | Some("" | "application/octet-stream" | "unknown/unknown") => Declared::Generic,
            Some(_) => Declared::Other,
        }
    }
}

/// The extractor's cleaned HTML → text as Python trafilatura writes it: one
/// line per paragraph, heading, list item or table row (cells joined by
/// ` | `), `<br>` as a line break, whitespace collapsed except in code
/// blocks (`<pre>`, or a `<code>` of several lines), which keep their lines
/// and indentation.
pub fn html_to_text(html: &str) -> String {
    use scraper::node::Node;

    fn is_block(name: &str) -> bool {
        matches!(
            name,
            "p" | "div"
                | "h1"
                | "h2"
                | "h3"
                | "h4"
                | "h5"
                | "h6"
                | "li"
                | "ul"
                | "ol"
                | "dl"
                | "dt"
                | "dd"
                | "blockquote"
                | "pre"
                | "table"
                | "tr"
                | "thead"
                | "tbody"
                | "tfoot"
                | "section"
                | "article"
                | "header"
                | "footer"
                | "figure"
                | "figcaption"
                | "hr"
                | "details"
                | "summary"
                | "main"
                | "aside"
                | "nav"
                | "address"
                | "caption"
                | "body"
                | "html"
        )
    }

    struct Writer {
        out: String,
        /// Whitespace seen and not yet written (collapsed to one space).
        pending_space: bool,
    }
    impl Writer {
        fn line_break(&mut self) {
            while self.out.ends_with(' ') {
                self.out.pop();
            }
            if !self.out.is_empty() && !self.out.ends_with('\n') {
                self.out.push('\n');
            }
            self.pending_space = false;
        }
        fn text(&mut self, text: &str) {
            for (i, word) in text.split(|c: char| c.is_whitespace()).enumerate() {
                if i > 0 {
                    self.pending_space = true;
                }
                if word.is_empty() {
                    continue;
                }
                if self.pending_space && !self.out.is_empty() && !self.out.ends_with('\n') {
                    self.out.push(' ');
                }
                self.pending_space = false;
                self.out.push_str(word);
            }
        }
    }

    fn walk(node: ego_tree::NodeRef<'_, Node>, in_pre: bool, w: &mut Writer) {
        match node.value() {
            Node::Text(text) if in_pre => {
                w.out.push_str(text);
                w.pending_space = false;
            }
            Node::Text(text) => w.text(text),
            Node::Element(element) => {
                let name = element.name();
                match name {
                    "br" => return w.line_break(),
                    "script" | "style" | "template" => return,
                    _ => {}
                }
                // The extractor writes code blocks as `<code>` (its
                // internal tag for them), inline code too: a block is one
                // whose text has line breaks, and it keeps them.
                let code_block = name == "code"
                    && !in_pre
                    && node
                        .descendants()
                        .any(|d| matches!(d.value(), Node::Text(t) if t.contains('\n')));
                let block = is_block(name) || code_block;
                if block {
                    w.line_break();
                }
                let mut first_cell = true;
                for child in node.children() {
                    if let Node::Element(cell) = child.value() {
                        if name == "tr" && matches!(cell.name(), "td" | "th") {
                            if !first_cell {
                                w.out.push_str(" | ");
                                w.pending_space = false;
                            }
                            first_cell = false;
                        }
                    }
                    walk(child, in_pre || name == "pre" || code_block, w);
                }
                if block {
                    w.line_break();
                }
            }
            _ => {
                for child in node.children() {
                    walk(child, in_pre, w);
                }
            }
        }
    }

    let fragment = scraper::Html::parse_fragment(html);
    let mut writer = Writer {
        out: String::new(),
        pending_space: false,
    };
    walk(fragment.tree.root(), false, &mut writer);
    writer
        .out
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Html,
    Text,
}

/// A header's value by its lower-cased name (WARC and HTTP headers alike).
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A `Content-Type` value: `text/html; charset=Shift_JIS` → essence
/// `text/html`, charset `Shift_JIS`.
struct MediaType {
    essence: String,
    charset: Option<String>,
}

impl MediaType {
    fn parse(value: &str) -> Self {
        let mut parts = value.split(';');
        let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let charset = parts.find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| value.trim().trim_matches(['"', '\'']).to_string())
        });
        Self { essence, charset }
    }
}

/// Header names (lower-cased) and values, in order.
type Headers = Vec<(String, String)>;

/// An HTTP response → (status, headers, body). Lines may end in CRLF or LF;
/// header lines that are not `name: value` are passed over, as browsers do.
fn split_http_response(block: &[u8]) -> Option<(u16, Headers, &[u8])> {
    let head_end = memchr::memmem::find(block, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .into_iter()
        .chain(memchr::memmem::find(block, b"\n\n").map(|i| (i, i + 2)))
        .min_by_key(|(i, _)| *i)?;
    let head = std::str::from_utf8(&block[..head_end.0])
        .ok()
        .map(Cow::Borrowed)
        .unwrap_or_else(|| String::from_utf8_lossy(&block[..head_end.0]));
    let mut lines = head.lines();
    let status_line = lines.next()?;
    let mut words = status_line.split_ascii_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    let status: u16 = words.next()?.parse().ok()?;
    let headers = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect();
    Some((status, headers, &block[head_end.1..]))
}

/// Undoes `Transfer-Encoding: chunked` and `Content-Encoding` (gzip,
/// deflate, zstd). Common Crawl stores bodies already decoded and renames the
/// headers (`X-Crawler-Content-Encoding`), so they are not decoded twice.
fn decode_payload<'a>(
    payload: &'a [u8],
    transfer_encoding: Option<&str>,
    content_encoding: Option<&str>,
    max_bytes: usize,
) -> Result<Cow<'a, [u8]>, String> {
    let mut payload = Cow::Borrowed(payload);
    if transfer_encoding.is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        // Some writers store the body de-chunked but keep the header: a body
        // that does not parse as chunks is taken as it is.
        if let Some(body) = dechunk(&payload) {
            payload = Cow::Owned(body);
        }
    }
    let coding = content_encoding.unwrap_or("identity").trim().to_ascii_lowercase();
    let limit = max_bytes as u64 + 1;
    let mut decoded = Vec::new();
    let read = match coding.as_str() {
        "" | "identity" | "none" => return Ok(payload),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&payload[..])
            .take(limit)
            .read_to_end(&mut decoded),
        // HTTP's "deflate" is zlib-wrapped, though some servers send it raw.
        "deflate" => match flate2::read::ZlibDecoder::new(&payload[..])
            .take(limit)
            .read_to_end(&mut decoded)
        {
            Ok(n) => Ok(n),
            Err(_) => {
                decoded.clear();
                flate2::read::DeflateDecoder::new(&payload[..])
                    .take(limit)
                    .read_to_end(&mut decoded)
            }
        },
        "zstd" => zstd::stream::read::Decoder::new(&payload[..]).and_then(|d| d.take(limit).read_to_end(&mut decoded)),
        other => {
            return Err(format!(
                "Content-Encoding '{other}' is not supported (gzip, deflate, zstd are)"
            ))
        }
    };
    match read {
        Ok(_) if decoded.len() > max_bytes => Err(format!(
            "page body exceeds max_record_bytes ({max_bytes}) once decompressed ({coding})"
        )),
        Ok(_) => Ok(Cow::Owned(decoded)),
        Err(e) => Err(format!("page body is not valid {coding} ({e})")),
    }
}

/// A chunked body → its data, or `None` when it is not chunked after all.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = memchr::memchr(b'\n', body)?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        // Chunk extensions (`;name=value`) are ignored.
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        body = &body[line_end + 1..];
        if size == 0 {
            return Some(out);
        }
        if body.len() < size {
            // A capture cut short: keep what arrived.
            out.extend_from_slice(body);
            return Some(out);
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size..];
        body = body
            .strip_prefix(b"\r\n")
            .or_else(|| body.strip_prefix(b"\n"))
            .unwrap_or(body);
        if body.is_empty() {
            return Some(out);
        }
    }
}

fn looks_like_html(payload: &[u8]) -> bool {
    let start = payload
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(payload.len());
    let head: Vec<u8> = payload[start..payload.len().min(start + 64)].to_ascii_lowercase();
    [&b"<!doctype html"[..], b"<html", b"<head", b"<!--"]
        .iter()
        .any(|p| head.starts_with(p))
}

/// Bytes → text, by the first of: a byte order mark, the charset the server
/// declared, a `<meta>` charset in the page's first 1024 bytes (HTML's
/// prescan), Mozilla's `chardetng` guess (with the URL's top-level domain as
/// a hint, as Firefox does). A declared charset the bytes do not fit (a page
/// that says UTF-8 but is Latin-1, a common lie) yields to the guess when the
/// guess decodes them cleanly. Unmappable bytes become U+FFFD.
fn decode_text<'a>(
    bytes: &'a [u8],
    declared: Option<&str>,
    html: bool,
    url: Option<&str>,
) -> (Cow<'a, str>, &'static Encoding) {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        return (text, encoding);
    }
    let declared = declared
        .and_then(|label| Encoding::for_label(label.as_bytes()))
        .or_else(|| if html { meta_charset(bytes) } else { None })
        // HTML: a page cannot declare UTF-16 in ASCII-compatible bytes.
        .map(|e| {
            if e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE {
                encoding_rs::UTF_8
            } else {
                e
            }
        });
    let guess = || {
        let mut detector = chardetng::EncodingDetector::new();
        detector.feed(bytes, true);
        let tld = url.and_then(|u| url::Url::parse(u).ok()).and_then(|u| {
            u.host_str()
                .map(|h| h.rsplit('.').next().unwrap_or_default().to_ascii_lowercase())
        });
        detector.guess(tld.as_deref().map(str::as_bytes), true)
    };
    match declared {
        Some(encoding) => {
            let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
            if had_errors {
                let guessed = guess();
                if guessed != encoding {
                    let (guessed_text, guessed_errors) = guessed.decode_without_bom_handling(bytes);
                    if !guessed_errors {
                        return (guessed_text, guessed);
                    }
                }
            }
            (text, encoding)
        }
        None => {
            let encoding = guess();
            (encoding.decode_without_bom_handling(bytes).0, encoding)
        }
    }
}

/// `<meta charset="…">` or `<meta http-equiv="Content-Type"
/// content="…; charset=…">` in the first 1024 bytes.
fn meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = bytes[..bytes.len().min(1024)].to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&head[from..], b"<meta") {
        let tag_start = from + at;
        let tag_end = memchr::memchr(b'>', &head[tag_start..]).map_or(head.len(), |e| tag_start + e);
        let tag = &head[tag_start..tag_end];
        if let Some(c) = memchr::memmem::find(tag, b"charset") {
            let rest = &tag[c + b"charset".len()..];
            let rest = rest
                .iter()
                .position(|&b| b != b' ')
                .map_or(&rest[rest.len()..], |i| &rest[i..]);
            if let Some(value) = rest.strip_prefix(b"=") {
                let value: Vec<u8> = value
                    .iter()
                    .copied()
                    .skip_while(|b| matches!(b, b' ' | b'"' | b'\''))
                    .take_while(|b| !matches!(b, b' ' | b'"' | b'\'' | b';' | b'/'))
                    .collect();
                if let Some(encoding) = Encoding::for_label(&value) {
                    return Some(encoding);
                }
            }
        }
        from = tag_end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warc(kind: &str) -> Vec<(String, String)> {
        vec![
            ("warc-type".into(), kind.into()),
            ("warc-record-id".into(), "<urn:uuid:1>".into()),
            ("warc-target-uri".into(), "https://example.ru/page".into()),
        ]
    }

    fn doc(outcome: PageOutcome) -> Document {
        match outcome {
            PageOutcome::Document(doc) => doc,
            other => panic!("expected a document, got {other:?}"),
        }
    }

    const ARTICLE: &str = "<html><head><title>On rivers</title></head><body><nav><a href=/>Home</a> <a href=/a>About</a></nav>\
        <article><h1>On rivers</h1><p>Rivers carry water from the mountains to the sea, shaping valleys over thousands of years.</p>\
        <p>Their floods bring silt that makes the plains fertile, which is why the oldest cities grew along their banks.</p></article>\
        <footer>Copyright 2024 Example Corp. All rights reserved.</footer></body></html>";

    #[test]
    fn a_page_becomes_its_main_text() {
        let reader = PageReader::new(HtmlFocus::Precision, 1 << 20);
        let block = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{ARTICLE}");
        let doc = doc(reader.page(&warc("response"), block.as_bytes()));
        assert!(doc.text.contains("Rivers carry water"), "{}", doc.text);
        assert!(doc.text.contains("oldest cities"), "{}", doc.text);
        assert!(!doc.text.contains("Copyright"), "{}", doc.text);
        assert!(!doc.text.contains("About"), "{}", doc.text);
        assert_eq!(doc.id, "urn:uuid:1");
        assert_eq!(doc.url.as_deref(), Some("https://example.ru/page"));
        assert_eq!(doc.metadata["title"], "On rivers");
        assert_eq!(doc.metadata["http_status"], 200);
        assert_eq!(doc.metadata["charset"], "utf-8");
    }

    #[test]
    fn text_keeps_paragraphs_rows_and_code_lines() {
        let html = "<h1>Title</h1><p>First   paragraph,\n with <em>inline</em> words.</p><p>Line<br>break</p>\
            <ul><li>one</li><li>two</li></ul><table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>\
            <pre><code>fn main() {\n    println!(\"hi\");\n}</code></pre><p>Call <code>f(x,  y)</code> now</p>\
            <code><code>for x in y:\n    print(x)\n</code></code><p>After</p>";
        assert_eq!(
            html_to_text(html),
            "Title\nFirst paragraph, with inline words.\nLine\nbreak\none\ntwo\na | b\n1 | 2\nfn main() {\n    println!(\"hi\");\n}\n\
             Call f(x, y) now\nfor x in y:\n    print(x)\nAfter"
        );
    }

    #[test]
    fn code_in_a_page_keeps_its_lines() {
        let reader = PageReader::new(HtmlFocus::Precision, 1 << 20);
        let code = "<pre><code><span class=\"kn\">import</span> <span class=\"nn\">os</span>\n\
            <span class=\"k\">for</span> x <span>in</span> y:\n    <span>print</span>(x)\n</code></pre>";
        let html = ARTICLE.replace(
            "</article>",
            &format!(
                "{code}<p>That loop prints every item of the list, one per line, which is all it does.</p></article>"
            ),
        );
        let block = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n{html}");
        let text = doc(reader.page(&warc("response"), block.as_bytes())).text;
        assert!(text.contains("\nimport os\nfor x in y:\n    print(x)\n"), "{text}");
        assert!(text.contains("Rivers carry water"), "{text}");
    }

    #[test]
    fn chunked_and_gzipped_bodies_are_decoded() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(ARTICLE.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let (first, second) = gz.split_at(gz.len() / 2);
        let mut block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
        for chunk in [first, second] {
            block.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
            block.extend_from_slice(chunk);
            block.extend_from_slice(b"\r\n");
        }
        block.extend_from_slice(b"0\r\n\r\n");
        let reader = PageReader::new(HtmlFocus::Precision, 1 << 20);
        assert!(doc(reader.page(&warc("response"), &block))
            .text
            .contains("Rivers carry water"));
        // Common Crawl's renamed headers mean "already decoded".
        let stored = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Crawler-Transfer-Encoding: chunked\r\nX-Crawler-Content-Encoding: gzip\r\n\r\n{ARTICLE}"
        );
        assert!(doc(reader.page(&warc("response"), stored.as_bytes()))
            .text
            .contains("Rivers carry water"));
        // A body that says gzip but is not: quarantined with the reason.
        let broken = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\r\n{ARTICLE}");
        match reader.page(&warc("response"), broken.as_bytes()) {
            PageOutcome::Bad(reason) => assert!(reason.contains("not valid gzip"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let brotli = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: br\r\n\r\n{ARTICLE}");
        assert!(matches!(reader.page(&warc("response"), brotli.as_bytes()), PageOutcome::Bad(r) if r.contains("'br'")));
    }

    #[test]
    fn charsets_come_from_the_server_the_page_or_the_bytes() {
        let reader = PageReader::new(HtmlFocus::Recall, 1 << 20);
        let russian = "<html><body><p>Реки несут воду с гор к морю, и за тысячи лет они прорезают широкие долины.</p>\
            <p>Их разливы приносят ил, делающий равнины плодородными, поэтому древнейшие города выросли на их берегах.</p></body></html>";
        let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode(russian);
        // Declared by the server.
        let mut block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=windows-1251\r\n\r\n".to_vec();
        block.extend_from_slice(&cp1251);
        let declared = doc(reader.page(&warc("response"), &block));
        assert!(declared.text.contains("Реки несут воду"), "{}", declared.text);
        assert_eq!(declared.metadata["charset"], "windows-1251");
        // Declared by the page.
        let mut block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<meta charset=\"windows-1251\">".to_vec();
        block.extend_from_slice(&cp1251);
        assert!(doc(reader.page(&warc("response"), &block))
            .text
            .contains("Реки несут воду"));
        // Declared by no one, or wrongly as UTF-8: the detector's guess.
        for head in [
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n",
        ] {
            let mut block = head.to_vec();
            block.extend_from_slice(&cp1251);
            let guessed = doc(reader.page(&warc("response"), &block));
            assert!(guessed.text.contains("Реки несут воду"), "{}", guessed.text);
            assert_eq!(guessed.metadata["charset"], "windows-1251");
        }
    }

    #[test]
    fn what_is_not_a_page_of_text_is_skipped_by_reason() {
        let reader = PageReader::new(HtmlFocus::Precision, 1 << 20);
        let skipped = |block: &str, kind: &str| match reader.page(&warc(kind), block.as_bytes()) {
            PageOutcome::Skipped(reason) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            skipped("HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n", "response"),
            "http_redirect"
        );
        assert_eq!(
            skipped(
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n<p>no</p>",
                "response"
            ),
            "http_client_error"
        );
        assert_eq!(
            skipped(
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n\u{89}PNG",
                "response"
            ),
            "not_html_or_text"
        );
        assert_eq!(skipped("", "revisit"), "revisit");
        // wget's own log, as a `resource` record: not a page at all.
        let mut log = warc("resource");
        log[2].1 = "<metadata://gnu.org/software/wget/warc/wget.log>".into();
        assert!(!holds_page(&log));
        assert!(holds_page(&warc("resource")) && holds_page(&warc("response")) && !holds_page(&warc("request")));
        // Heritrix's DNS lookups are `response` records too.
        let mut dns = warc("response");
        dns[2].1 = "dns:example.com".into();
        assert!(!holds_page(&dns));
        // A response stored without its HTTP head is typed by its WARC header.
        let mut bare = warc("response");
        bare.push(("content-type".into(), "text/html".into()));
        assert!(doc(reader.page(&bare, ARTICLE.as_bytes()))
            .text
            .contains("Rivers carry water"));
        bare.last_mut().unwrap().1 = "application/http; msgtype=response".into();
        assert!(matches!(reader.page(&bare, ARTICLE.as_bytes()), PageOutcome::Bad(_)));
        assert!(matches!(
            reader.page(&warc("response"), b"garbage without a status"),
            PageOutcome::Bad(_)
        ));
        // Plain text is kept as it is; an untyped body that starts like HTML is HTML.
        let text = doc(reader.page(
            &warc("response"),
            b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nline one\nline two",
        ));
        assert_eq!(text.text, "line one\nline two");
        assert_eq!(text.metadata["content_type"], "text/plain");
        let untyped = format!("HTTP/1.1 200 OK\r\n\r\n  {ARTICLE}");
        assert!(doc(reader.page(&warc("response"), untyped.as_bytes()))
            .text
            .contains("Rivers carry water"));
        // A page with nothing to extract: empty text and the extractor's reason.
        let empty = doc(reader.page(
            &warc("response"),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body></body></html>",
        ));
        assert_eq!(empty.text, "");
        assert!(empty.metadata["html_extraction_error"].is_string());
    }
}
