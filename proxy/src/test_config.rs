//! A minimal valid edge configuration for unit tests (one site, one backend
//! key, no HTTPS listener): the text modules append their own sections to.

/// The configuration text; prefix it with `data_dir = "…"`.
pub(crate) const MINIMAL: &str = "[listeners]\nhttps = \"\"\nplain_http = \"events\"\n\
    [[sites]]\nid = \"a\"\ndomains = [\"a.example.com\"]\n\
    [encryption]\nactive_key_id = \"1bf54b4d765f4db4\"\n\
    [[encryption.backend_keys]]\nid = \"1bf54b4d765f4db4\"\n\
    public_key = \"Fswmsl9cVJDqZ2A8WRNKQGGrxuDFpocFNH1/J+67LDc=\"\n";
