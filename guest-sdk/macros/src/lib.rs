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
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::{Error, ImplItem, ItemImpl, Type, parse_macro_input};

/// The WIT package, vendored into this crate (`wit/`).
const WIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wit");
/// The WIT package's `package` line: its version is the contract version,
/// written only there.
const WIT_TYPES: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/wit/types.wit"));

/// The contract version, from `package cascade:runtime@X;`.
fn wit_version() -> &'static str {
    WIT_TYPES
        .lines()
        .find_map(|line| line.trim().strip_prefix("package cascade:runtime@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("wit/types.wit declares `package cascade:runtime@VERSION;`")
}

/// Turns the handlers of an inherent `impl` block into component exports.
///
/// Every method must be named `on_<event>` or `after_<event>` (the event in
/// snake case, e.g. `on_user_created` for `UserCreated`) and have the
/// signature `fn(Event, Context) -> HandlerResult`.
///
/// `#[process_manager(state = T)]` makes a per-instance (stateful) process
/// manager: `T` implements `Default`, `Serialize` and `Deserialize`, each
/// handler takes `&mut T` first, the state of its event's instance, and the
/// host persists each instance's `T` (as JSON) with the checkpoint. An
/// `fn instances() -> Vec<InstanceRule>` in the block says which instance
/// each event belongs to (default: its stream id, and it may start one).
#[proc_macro_attribute]
pub fn process_manager(attr: TokenStream, item: TokenStream) -> TokenStream {
    let state = match parse_state_attr(attr.into()) {
        Ok(state) => state,
        Err(err) => return err.to_compile_error().into(),
    };
    let block = parse_macro_input!(item as ItemImpl);
    let kind = match state {
        Some(state) => Kind::Stateful(state),
        None => Kind::Stateless,
    };
    match listener_exports(&block, &kind) {
        Ok(exports) => quote!(#block #exports).into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// Turns an inherent `impl` block into a projection component.
///
/// Methods named `on_<event>` with the signature `fn(Event, Context) ->
/// HandlerResult` become `on-<event>` exports; the block must also have
/// `fn collections() -> Vec<Collection>` declaring the collections the
/// projection owns and the fields it indexes. Projections have no `after_`
/// handlers and cannot dispatch commands.
#[proc_macro_attribute]
pub fn projection(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return Error::new(proc_macro2::Span::call_site(), "`#[projection]` takes no arguments")
            .to_compile_error()
            .into();
    }
    let block = parse_macro_input!(item as ItemImpl);
    match listener_exports(&block, &Kind::Projection) {
        Ok(exports) => quote!(#block #exports).into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// What kind of listener a block implements.
enum Kind {
    Stateless,
    Stateful(Type),
    Projection,
}

/// `state = Type`, or nothing.
fn parse_state_attr(attr: TokenStream2) -> syn::Result<Option<Type>> {
    if attr.is_empty() {
        return Ok(None);
    }
    let parser = |input: syn::parse::ParseStream<'_>| {
        let key: syn::Ident = input.parse()?;
        if key != "state" {
            return Err(Error::new_spanned(&key, "expected `state = Type`"));
        }
        input.parse::<syn::Token![=]>()?;
        input.parse::<Type>()
    };
    syn::parse::Parser::parse2(parser, attr).map(Some)
}

fn listener_exports(block: &ItemImpl, kind: &Kind) -> syn::Result<TokenStream2> {
    let state = match kind {
        Kind::Stateful(state) => Some(state),
        _ => None,
    };
    let projection = matches!(kind, Kind::Projection);
    if let Some((_, path, _)) = &block.trait_ {
        return Err(Error::new_spanned(
            path,
            "`#[process_manager]` goes on an inherent `impl` block, not on a trait impl",
        ));
    }
    let ty = self_ident(&block.self_ty)?;
    let declares_instances = block
        .items
        .iter()
        .any(|item| matches!(item, ImplItem::Fn(f) if f.sig.ident == "instances"));
    let mut wit_exports = String::new();
    let mut forwards = Vec::new();
    for item in &block.items {
        let ImplItem::Fn(func) = item else { continue };
        let name = &func.sig.ident;
        let text = name.to_string();
        if projection && text == "collections" {
            continue;
        }
        if state.is_some() && text == "instances" {
            continue;
        }
        if projection && text.starts_with("after_") {
            return Err(Error::new_spanned(
                name,
                "projections only have `on_<event>` handlers: phase 2 (`after_`) is for process managers",
            ));
        }
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
        let call = match state {
            None => quote!(#ty::#name(event, ctx)),
            Some(_) => {
                quote!(::cascade_sdk::__private::with_state(|state| #ty::#name(state, event, ctx)))
            }
        };
        forwards.push(quote! {
            fn #name(event: ::cascade_sdk::Event, ctx: ::cascade_sdk::Context) -> ::cascade_sdk::HandlerResult {
                #call
            }
        });
    }
    if forwards.is_empty() {
        return Err(Error::new_spanned(
            &block.self_ty,
            "a process manager needs at least one `on_<event>` or `after_<event>` handler",
        ));
    }
    let base = match kind {
        Kind::Stateless => "process-manager",
        Kind::Stateful(_) => "stateful-process-manager",
        Kind::Projection => "projection",
    };
    let version = wit_version();
    let world = format!(
        "package cascade-plugin:guest;\n\
         world guest {{\n\
             include cascade:runtime/{base}@{version};\n\
             use cascade:runtime/types@{version}.{{event, context, handler-error}};\n\
             {wit_exports}\
         }}\n"
    );
    let module = format_ident!("__cascade_process_manager_{}", ty.to_string().to_lowercase());
    // The interfaces of the world's imports (and the stateful world's
    // export types), mapped to the SDK's shared bindings.
    const PROCESS_MANAGER: &[&str] = &[
        "types",
        "event-envelope",
        "commands",
        "read-models",
        "log",
        "instance",
        "timers",
        "config",
        "effects",
    ];
    let with = match kind {
        Kind::Projection => shared_interfaces(&[
            "types",
            "event-envelope",
            "read-models",
            "read-model-writer",
            "projection-types",
            "log",
        ]),
        Kind::Stateless => shared_interfaces(PROCESS_MANAGER),
        Kind::Stateful(_) => shared_interfaces(&[PROCESS_MANAGER, &["instance-types"]].concat()),
    };
    let collections = match kind {
        Kind::Projection => quote! {
            fn collections() -> Vec<::cascade_sdk::Collection> {
                #ty::collections()
            }
        },
        _ => quote!(),
    };
    let instances = match (state, declares_instances) {
        (None, _) => quote!(),
        (Some(_), true) => quote! {
            fn instances() -> Vec<::cascade_sdk::InstanceRule> {
                #ty::instances()
            }
        },
        (Some(_), false) => quote! {
            fn instances() -> Vec<::cascade_sdk::InstanceRule> {
                Vec::new()
            }
        },
    };
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
                #instances
                #collections
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
    let world = format!("cascade:runtime/aggregate-world@{}", wit_version());
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
            use exports::cascade::runtime::aggregate::{Decision, Description, EventDeclaration, Guest, NewEvent};
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
                fn handle(state: Option<Vec<u8>>, stream_id: String, command: String, args: String) -> Result<Decision, String> {
                    let (events, state) = ::cascade_sdk::__private::handle::<#ty>(state, &stream_id, &command, &args)?;
                    let events = events.into_iter().map(|(name, payload)| NewEvent { name, payload }).collect();
                    Ok(Decision { events, state })
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
        let key = format!("cascade:runtime/{name}@{}", wit_version());
        let module = format_ident!("{}", name.replace('-', "_"));
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
