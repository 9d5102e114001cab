//! MySQL's SQL as the globals need it: tokens (backticked identifiers, strings, comments,
//! words, symbols) and statements split on `;` outside quotes.

/// One SQL token of MySQL's dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Word(String),
    /// A backticked identifier, unescaped.
    Ident(String),
    /// A string literal, unescaped.
    Str(String),
    /// A `/* … */` comment, as written.
    Comment(String),
    Sym(char),
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    pub fn is_sym(&self, c: char) -> bool {
        self.tok == Tok::Sym(c)
    }

    /// A name: an identifier, a string or a bare word.
    pub fn name(&self) -> Option<String> {
        match &self.tok {
            Tok::Word(w) | Tok::Ident(w) | Tok::Str(w) => Some(w.clone()),
            _ => None,
        }
    }
}

/// Where a quoted run opening at `i` with `q` ends (just past its closing quote); `''`-style
/// doubling and (outside backticks) backslash escapes are respected.
fn quoted_end(b: &[u8], i: usize, q: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == b'\\' && q != b'`' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

fn unquote(inner: &str, q: char) -> String {
    let doubled = format!("{q}{q}");
    let s = inner.replace(&doubled, &q.to_string());
    if q == '`' {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('0') => out.push('\0'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) fn tokenize(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' || (c == b'-' && b.get(i + 1) == Some(&b'-')) {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let tok = if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i = (i + 2).min(b.len());
            Tok::Comment(s[start..i].to_owned())
        } else if matches!(c, b'`' | b'\'' | b'"') {
            i = quoted_end(b, i, c);
            let inner = &s[start + 1..i.saturating_sub(1).max(start + 1)];
            if c == b'`' {
                Tok::Ident(unquote(inner, '`'))
            } else {
                Tok::Str(unquote(inner, c as char))
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            Tok::Word(s[start..i].to_owned())
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            i += ch.len_utf8();
            Tok::Sym(ch)
        };
        out.push(Token { tok, start, end: i });
    }
    out
}

/// Splits SQL text into statements (each ending in `;`), leaving out blank text and
/// comment-only lines. Quotes are respected.
pub fn split(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    let mut last_end = 0;
    let mut has_code = false;
    for t in tokenize(sql) {
        if t.is_sym(';') {
            if has_code {
                out.push(format!("{};", sql[from..t.start].trim()));
            }
            from = t.end;
            has_code = false;
        } else {
            if !has_code {
                from = t.start;
            }
            has_code = true;
        }
        last_end = t.end;
    }
    if has_code {
        out.push(sql[from..last_end].trim().to_owned());
    }
    out
}
