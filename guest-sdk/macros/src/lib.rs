//! Procedural macros of `cascade-sdk`.
//!
//! A Cascade handler is a component export whose *name* carries the event
//! (`on-user-created`), so every process manager has its own WIT world. These
//! macros write that world from the Rust function names and invoke
//! `wit_bindgen::generate!` with it, mapping the shared `cascade:runtime`
//! interfaces onto the SDK's own bindings so every plugin shares one set of
//! types. Use them through `cascade_sdk`, not directly.

use heck::ToKebabCase;
use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{Error, ImplItem, ItemImpl, Type, parse_macro_input};

/// The WIT package, found next to this crate at the SDK's compile time.
const WIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");
const WIT_VERSION: &str = "0.1.0";

/// Turns the handlers of an inherent `impl` block into component exports.
///
/// Every method must be named `on_<event>` or `after_<event>` (the event in
/// snake case, e.g. `on_user_created` for `UserCreated`) and have the
/// signature `fn(Event, Context) -> HandlerResult`.
#[proc_macro_attribute]
pub fn process_manager(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return Error::new(Span::call_site(), "`#[process_manager]` takes no arguments")
            .to_compile_error()
            .into();
    }
    let block = parse_macro_input!(item as ItemImpl);
    match process_manager_exports(&block) {
        Ok(exports) => quote!(#block #exports).into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn process_manager_exports(block: &ItemImpl) -> syn::Result<TokenStream2> {
    if let Some((_, path, _)) = &block.trait_ {
        return Err(Error::new_spanned(
            path,
            "`#[process_manager]` goes on an inherent `impl` block, not on a trait impl",
        ));
    }
    let ty = self_ident(&block.self_ty)?;
    let mut wit_exports = String::new();
    let mut forwards = Vec::new();
    for item in &block.items {
        let ImplItem::Fn(func) = item else { continue };
        let name = &func.sig.ident;
        let text = name.to_string();
        if !(text.starts_with("on_") || text.starts_with("after_")) {
            return Err(Error::new_spanned(
                name,
                format!(
                    "process manager handler `{text}` must be named `on_<event>` or `after_<event>`, \
                     e.g. `on_user_created` for the event `UserCreated`"
                ),
            ));
        }
        wit_exports.push_str(&format!(
            "export {}: func(event: event, ctx: context) -> result<_, handler-error>;\n",
            text.to_kebab_case()
        ));
        forwards.push(quote! {
            fn #name(event: ::cascade_sdk::Event, ctx: ::cascade_sdk::Context) -> ::cascade_sdk::HandlerResult {
                #ty::#name(event, ctx)
            }
        });
    }
    if forwards.is_empty() {
        return Err(Error::new_spanned(
            &block.self_ty,
            "a process manager needs at least one `on_<event>` or `after_<event>` handler",
        ));
    }
    let world = format!(
        "package cascade-plugin:guest;\n\
         world guest {{\n\
             include cascade:runtime/process-manager@{WIT_VERSION};\n\
             use cascade:runtime/types@{WIT_VERSION}.{{event, context, handler-error}};\n\
             {wit_exports}\
         }}\n"
    );
    let module = format_ident!("__cascade_process_manager_{}", ty.to_string().to_lowercase());
    let with = shared_interfaces(&["types", "commands", "log"]);
    Ok(quote! {
        #[doc(hidden)]
        #[allow(clippy::all, unused)]
        mod #module {
            ::cascade_sdk::__private::wit_bindgen::generate!({
                inline: #world,
                path: #WIT_DIR,
                world: "cascade-plugin:guest/guest",
                with: { #with },
                runtime_path: "::cascade_sdk::__private::wit_bindgen::rt",
            });
            use super::#ty;
            impl Guest for #ty {
                #(#forwards)*
            }
            export!(#ty);
        }
    })
}

/// Exports a type implementing `cascade_sdk::Aggregate` as an aggregate component.
///
/// ```ignore
/// cascade_sdk::export_aggregate!(Users);
/// ```
#[proc_macro]
pub fn export_aggregate(item: TokenStream) -> TokenStream {
    let ty = parse_macro_input!(item as syn::Ident);
    let module = format_ident!("__cascade_aggregate_{}", ty.to_string().to_lowercase());
    let world = format!("cascade:runtime/aggregate-world@{WIT_VERSION}");
    let with = shared_interfaces(&["log"]);
    quote! {
        #[doc(hidden)]
        #[allow(clippy::all, unused)]
        mod #module {
            ::cascade_sdk::__private::wit_bindgen::generate!({
                path: #WIT_DIR,
                world: #world,
                with: { #with },
                runtime_path: "::cascade_sdk::__private::wit_bindgen::rt",
            });
            use exports::cascade::runtime::aggregate::{Description, EventDeclaration, Guest, NewEvent};
            use super::#ty;
            impl Guest for #ty {
                fn describe() -> Description {
                    let (name, events, commands) = ::cascade_sdk::__private::describe::<#ty>();
                    Description {
                        name,
                        events: events
                            .into_iter()
                            .map(|(name, schema)| EventDeclaration { name, schema })
                            .collect(),
                        commands,
                    }
                }
                fn handle(state: Option<Vec<u8>>, stream_id: String, command: String, args: String) -> Result<Vec<NewEvent>, String> {
                    let events = ::cascade_sdk::__private::handle::<#ty>(state, &stream_id, &command, &args)?;
                    Ok(events.into_iter().map(|(name, payload)| NewEvent { name, payload }).collect())
                }
                fn apply(state: Option<Vec<u8>>, event: String, payload: String) -> Vec<u8> {
                    ::cascade_sdk::__private::apply::<#ty>(state, &event, &payload)
                }
            }
            export!(#ty);
        }
    }
    .into()
}

/// `with:` entries that point the shared interfaces at the SDK's bindings.
fn shared_interfaces(names: &[&str]) -> TokenStream2 {
    let entries = names.iter().map(|name| {
        let key = format!("cascade:runtime/{name}@{WIT_VERSION}");
        let module = format_ident!("{name}");
        quote!(#key: ::cascade_sdk::__private::wit::#module,)
    });
    quote!(#(#entries)*)
}

fn self_ident(ty: &Type) -> syn::Result<syn::Ident> {
    if let Type::Path(path) = ty
        && path.qself.is_none()
        && path.path.segments.len() == 1
    {
        return Ok(path.path.segments[0].ident.clone());
    }
    Err(Error::new_spanned(
        ty,
        "`#[process_manager]` expects `impl TypeName { ... }` with a plain type name",
    ))
}
