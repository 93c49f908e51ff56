//! `#[ktest]` — registers an in-kernel test right where it is written.
//!
//! ```text
//! #[ktest]                      // runs on every CPU model
//! fn allocation_map_starts_with_key_0() { … }
//!
//! #[ktest(needs = pku)]         // skipped (and counted as skipped) without PKU
//! fn fifteen_keys_then_enospc() { … }
//!
//! #[ktest(needs = no_pku)]      // the "no protection keys" paths, e.g. under -cpu qemu64
//! fn pkey_alloc_is_enospc() { … }
//!
//! #[ktest(panics = "kernel stack overflow")]   // passes only if it ends the boot with a
//! fn overflow_is_reported() { … }              // panic whose message contains the text
//!
//! #[ktest(needs = pks)]         // page tables guarded by PKS; skipped under qemu64 or pks=off
//! #[ktest(needs = pks_smp)]     // PKS and more than one CPU
//!
//! #[ktest(needs = smp, panics = "…")]          // both: skipped on one CPU
//! ```
//!
//! The attribute leaves the function as it is and adds, next to it, a
//! `#[test_case] static` of type `crate::ktest::KTest` naming the function, its module path and
//! its requirement. The compiler's `custom_test_frameworks` collects every `#[test_case]` of the
//! test build into one slice and hands it to the harness — so there is no central list of tests
//! to edit by hand. Written without `syn`: it only needs the function's name.

use proc_macro::{TokenStream, TokenTree};

#[proc_macro_attribute]
pub fn ktest(attr: TokenStream, item: TokenStream) -> TokenStream {
    let (needs, expect_panic) = match needs_of(attr) {
        Ok(n) => n,
        Err(msg) => return compile_error(&msg),
    };
    let Some(name) = fn_name(&item) else {
        return compile_error("#[ktest] goes on a `fn`");
    };
    let registration = format!(
        "#[test_case]\n\
         #[allow(non_upper_case_globals)]\n\
         static __ktest_{name}: crate::ktest::KTest = crate::ktest::KTest {{\n\
             name: concat!(module_path!(), \"::\", \"{name}\"),\n\
             needs: crate::ktest::Needs::{needs},\n\
             expect_panic: {expect_panic},\n\
             run: {name},\n\
         }};"
    );
    let mut out = item;
    out.extend(registration.parse::<TokenStream>().expect("generated registration parses"));
    out
}

/// `needs = pku` → `Pku`, `needs = no_pku` → `NoPku`, nothing → `Nothing`; `panics = "text"`
/// → the panic the test must end with; both, separated by a comma (`needs = smp, panics = "…"`).
fn needs_of(attr: TokenStream) -> Result<(&'static str, String), String> {
    let tokens: Vec<TokenTree> = attr.into_iter().collect();
    let mut needs = "Nothing";
    let mut panics = "None".to_string();
    for part in tokens.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ',')) {
        match part {
            [TokenTree::Ident(key), TokenTree::Punct(eq), TokenTree::Literal(text)]
                if key.to_string() == "panics" && eq.as_char() == '=' && text.to_string().starts_with('"') =>
            {
                panics = format!("Some({text})");
            }
            [TokenTree::Ident(key), TokenTree::Punct(eq), TokenTree::Ident(value)]
                if key.to_string() == "needs" && eq.as_char() == '=' =>
            {
                needs = match value.to_string().as_str() {
                    "pku" => "Pku",
                    "no_pku" => "NoPku",
                    "harness_selftest" => "HarnessSelftest",
                    "smp" => "Smp",
                    "numa" => "Numa",
                    "pks" => "Pks",
                    "pks_smp" => "PksSmp",
                    other => {
                        return Err(format!(
                            "#[ktest(needs = …)]: unknown requirement `{other}` (pku, no_pku, harness_selftest, smp, numa, pks, pks_smp)"
                        ))
                    }
                };
            }
            [] if tokens.is_empty() => {}
            _ => return Err("#[ktest] takes nothing, `needs = pku|no_pku|harness_selftest|smp|numa|pks|pks_smp`, `panics = \"text\"`, or both".into()),
        }
    }
    Ok((needs, panics))
}

fn fn_name(item: &TokenStream) -> Option<String> {
    let mut tokens = item.clone().into_iter();
    while let Some(t) = tokens.next() {
        if let TokenTree::Ident(id) = &t {
            if id.to_string() == "fn" {
                return match tokens.next() {
                    Some(TokenTree::Ident(name)) => Some(name.to_string()),
                    _ => None,
                };
            }
        }
    }
    None
}

fn compile_error(msg: &str) -> TokenStream {
    format!("compile_error!({msg:?});").parse().unwrap()
}
