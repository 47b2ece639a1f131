//! `#[derive(Enum)]` and `#[derive(Model)]`: user types as ports.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::docs;

fn option_str(text: Option<String>) -> TokenStream {
    match text {
        Some(text) => quote!(::core::option::Option::Some(#text)),
        None => quote!(::core::option::Option::None),
    }
}

/// What a derived port is named and described by: the type's name as its identifier and its
/// doc comment (`what` names the derive for the error about generics, which ports cannot have).
struct PortHead {
    identifier: String,
    description: TokenStream,
}

fn port_head(input: &DeriveInput, what: &str) -> syn::Result<PortHead> {
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            format!("{what} types cannot be generic"),
        ));
    }
    Ok(PortHead {
        identifier: input.ident.unraw().to_string(),
        description: option_str(docs::item_description(&input.attrs)),
    })
}

/// The derived `Port::port`: a port of `kind` named and described by `head`, with `items` as
/// its `choices` or `children` (`list`).
fn port_fn(
    head: &PortHead,
    kind: TokenStream,
    list: TokenStream,
    items: &[TokenStream],
) -> TokenStream {
    let sdk = quote!(::rekuest_guest::__private);
    let PortHead {
        identifier,
        description,
    } = head;
    quote! {
        fn port() -> #sdk::PortSpec {
            #sdk::PortSpec {
                #list: ::core::option::Option::Some(::std::vec![#(#items),*]),
                ..#sdk::PortSpec::new(#sdk::PortKind::#kind)
                    .identified(#identifier)
                    .described(#description)
            }
        }
    }
}

/// Expands `#[derive(Enum)]`: a fieldless enum → an ENUM port whose choices are the variant
/// names.
pub(crate) fn expand_enum(input: DeriveInput) -> syn::Result<TokenStream> {
    let head = port_head(&input, "Enum")?;
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "`#[derive(Enum)]` needs an enum of variants without fields",
        ));
    };
    if data.variants.is_empty() {
        return Err(syn::Error::new(
            input.ident.span(),
            "an Enum needs at least one variant",
        ));
    }
    let sdk = quote!(::rekuest_guest::__private);
    let ident = &input.ident;
    let mut choices = Vec::new();
    let mut decode = Vec::new();
    let mut encode = Vec::new();
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            return Err(syn::Error::new(
                variant.fields.span(),
                "Enum variants cannot have fields",
            ));
        }
        let name = &variant.ident;
        let value = name.unraw().to_string();
        let choice_description = option_str(docs::item_description(&variant.attrs));
        choices.push(quote!(#sdk::Choice::new(#value, #choice_description)));
        decode.push(quote!(#value => ::core::result::Result::Ok(Self::#name),));
        encode.push(quote!(Self::#name => #value,));
    }
    let port = port_fn(&head, quote!(Enum), quote!(choices), &choices);
    Ok(quote! {
        impl ::rekuest_guest::Port for #ident {
            const DEFAULT_KINDS: u8 = #sdk::default_kinds::STRING;

            #port

            fn decode(
                value: #sdk::Value,
                path: &#sdk::Path<'_>,
            ) -> ::core::result::Result<Self, #sdk::PortError> {
                match &value {
                    #sdk::Value::String(name) => match name.as_str() {
                        #(#decode)*
                        _ => ::core::result::Result::Err(path.mismatch::<Self>(&value)),
                    },
                    _ => ::core::result::Result::Err(path.mismatch::<Self>(&value)),
                }
            }

            fn encode(
                self,
                _path: &#sdk::Path<'_>,
            ) -> ::core::result::Result<#sdk::Value, #sdk::PortError> {
                let name = match self {
                    #(#encode)*
                };
                ::core::result::Result::Ok(#sdk::Value::String(::std::string::String::from(name)))
            }
        }
    })
}

/// Expands `#[derive(Model)]`: a struct with named fields → a MODEL port with one child per
/// field, sent as a JSON object.
pub(crate) fn expand_model(input: DeriveInput) -> syn::Result<TokenStream> {
    let head = port_head(&input, "Model")?;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "`#[derive(Model)]` needs a struct with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            data.fields.span(),
            "`#[derive(Model)]` needs a struct with named fields",
        ));
    };
    if fields.named.is_empty() {
        return Err(syn::Error::new(
            input.ident.span(),
            "a Model needs at least one field",
        ));
    }
    let sdk = quote!(::rekuest_guest::__private);
    let ident = &input.ident;
    let mut children = Vec::new();
    let mut decode = Vec::new();
    let mut encode = Vec::new();
    for field in &fields.named {
        let Some(name) = &field.ident else {
            continue;
        };
        let key = name.unraw().to_string();
        let ty = &field.ty;
        let field_description = option_str(docs::item_description(&field.attrs));
        children.push(quote!(
            #sdk::port::<#ty>(#key, #field_description, ::core::option::Option::None, ::core::option::Option::None)
        ));
        decode.push(quote!(#name: #sdk::field(&mut fields, #key, path)?,));
        encode.push(quote!(
            fields.insert(
                ::std::string::String::from(#key),
                ::rekuest_guest::Port::encode(self.#name, &path.field(#key))?,
            );
        ));
    }
    let port = port_fn(&head, quote!(Model), quote!(children), &children);
    Ok(quote! {
        impl ::rekuest_guest::Port for #ident {
            // A model's default would be an object, which no literal is.
            const DEFAULT_KINDS: u8 = 0;

            #port

            fn decode(
                value: #sdk::Value,
                path: &#sdk::Path<'_>,
            ) -> ::core::result::Result<Self, #sdk::PortError> {
                let mut fields = match value {
                    #sdk::Value::Object(fields) => fields,
                    other => return ::core::result::Result::Err(path.mismatch::<Self>(&other)),
                };
                ::core::result::Result::Ok(Self { #(#decode)* })
            }

            fn encode(
                self,
                path: &#sdk::Path<'_>,
            ) -> ::core::result::Result<#sdk::Value, #sdk::PortError> {
                let mut fields = #sdk::Map::new();
                #(#encode)*
                ::core::result::Result::Ok(#sdk::Value::Object(fields))
            }
        }
    })
}
