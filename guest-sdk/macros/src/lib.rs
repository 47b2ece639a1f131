//! Proc macros of the rekuest guest SDK. Use them through `rekuest_guest` (its prelude), which
//! documents them; the generated code refers to `::rekuest_guest`.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::punctuated::Punctuated;
use syn::{DeriveInput, ItemFn, Token, parse_macro_input};

mod derive;
mod docs;
mod register;

/// Registers a plain function as a rekuest action (see the `rekuest_guest` crate docs).
#[proc_macro_attribute]
pub fn register(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut options = register::Options::default();
    let parser = syn::meta::parser(|meta| options.parse(meta));
    parse_macro_input!(attr with parser);
    let function = parse_macro_input!(item as ItemFn);
    match register::expand(options, function.clone()) {
        Ok(expanded) => expanded.into(),
        Err(error) => {
            // Keep the function (without `#[arg]`s), so that only the error is reported.
            let mut function = function;
            for input in &mut function.sig.inputs {
                if let syn::FnArg::Typed(typed) = input {
                    typed.attrs.retain(|attr| !attr.path().is_ident("arg"));
                }
            }
            let error = error.into_compile_error();
            quote!(#error #function).into()
        }
    }
}

/// Exports the listed `#[register]` functions as the component's actions.
#[proc_macro]
pub fn export_actions(input: TokenStream) -> TokenStream {
    let parser = Punctuated::<syn::Path, Token![,]>::parse_terminated;
    let paths = parse_macro_input!(input with parser);
    export_actions_impl(paths)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn export_actions_impl(
    paths: Punctuated<syn::Path, Token![,]>,
) -> syn::Result<proc_macro2::TokenStream> {
    if paths.is_empty() {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "list the component's `#[register]` functions: `export_actions!(add, divide)`",
        ));
    }
    let mut actions = Vec::new();
    for mut path in paths {
        let Some(last) = path.segments.last_mut() else {
            continue;
        };
        if !last.arguments.is_none() {
            return Err(syn::Error::new_spanned(
                &last.arguments,
                "name the function without generic arguments",
            ));
        }
        let name = syn::ext::IdentExt::unraw(&last.ident);
        last.ident = format_ident!("__rekuest_action_{}", name, span = last.ident.span());
        actions.push(path);
    }
    let sdk = quote!(::rekuest_guest::__private);
    Ok(quote! {
        const _: () = {
            // `#[used]`: native builds, which export nothing, still count the actions as used.
            #[used]
            static __REKUEST_ACTIONS: &[#sdk::Action] = &[#(#actions),*];

            struct __RekuestComponent;

            impl #sdk::Guest for __RekuestComponent {
                fn describe() -> ::std::string::String {
                    #sdk::describe(__REKUEST_ACTIONS)
                }

                fn run(
                    key: ::std::string::String,
                    args_json: ::std::string::String,
                ) -> ::core::result::Result<(), #sdk::WitRunError> {
                    #sdk::run(__REKUEST_ACTIONS, &key, &args_json)
                }
            }

            // Only wasm components export the WIT functions: their names are no native
            // symbols, and a native build (tests, `cargo build --workspace`) must still link.
            #[cfg(target_family = "wasm")]
            ::rekuest_guest::bindings::__export_component!(
                __RekuestComponent with_types_in ::rekuest_guest::bindings
            );
        };
    })
}

/// Makes a fieldless enum an ENUM port (see the `rekuest_guest` crate docs).
#[proc_macro_derive(Enum)]
pub fn derive_enum(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive::expand_enum(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a struct with named fields a MODEL port (see the `rekuest_guest` crate docs).
#[proc_macro_derive(Model)]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive::expand_model(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
