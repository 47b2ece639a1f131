//! `#[register]`: a plain function → an action (definition + runner).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Expr, FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, ReturnType, Type,
    TypeParamBound,
};

use crate::docs;

/// Options of `#[register(...)]`.
#[derive(Default)]
pub(crate) struct Options {
    name: Option<LitStr>,
    version: Option<LitStr>,
    dependencies: Vec<DependencyOption>,
    /// `lock = "stage"`, repeatable.
    locks: Vec<LitStr>,
    /// `state = Position`, repeatable.
    states: Vec<Type>,
}

/// `dependency = "add"` or `dependency(key = "adder", action = "add" | hash = "...", optional)`.
struct DependencyOption {
    key: LitStr,
    action: Option<LitStr>,
    hash: Option<LitStr>,
    optional: bool,
}

impl Options {
    /// Parses one `key = value` of `#[register(...)]`.
    pub(crate) fn parse(&mut self, meta: syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("name") {
            self.name = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("version") {
            self.version = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("dependency") {
            self.dependencies.push(parse_dependency(&meta)?);
        } else if meta.path.is_ident("lock") {
            self.locks.push(meta.value()?.parse()?);
        } else if meta.path.is_ident("state") {
            self.states.push(meta.value()?.parse()?);
        } else {
            return Err(meta.error(
                "unknown option; expected `name = \"...\"`, `version = \"...\"`, \
                 `dependency = \"action\"`, `dependency(key = \"...\", action = \"...\")`, \
                 `lock = \"...\"` or `state = Type`",
            ));
        }
        Ok(())
    }
}

/// Parses a `dependency` option (its slot is named after the action unless `key` is given).
fn parse_dependency(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<DependencyOption> {
    if meta.input.peek(syn::Token![=]) {
        let action: LitStr = meta.value()?.parse()?;
        return Ok(DependencyOption {
            key: action.clone(),
            action: Some(action),
            hash: None,
            optional: false,
        });
    }
    let mut key: Option<LitStr> = None;
    let mut action: Option<LitStr> = None;
    let mut hash: Option<LitStr> = None;
    let mut optional = false;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("key") {
            key = Some(inner.value()?.parse()?);
        } else if inner.path.is_ident("action") {
            action = Some(inner.value()?.parse()?);
        } else if inner.path.is_ident("hash") {
            hash = Some(inner.value()?.parse()?);
        } else if inner.path.is_ident("optional") {
            optional = true;
        } else {
            return Err(inner.error("expected `key`, `action`, `hash` or `optional`"));
        }
        Ok(())
    })?;
    if action.is_some() == hash.is_some() {
        return Err(
            meta.error("a dependency names exactly one of `action = \"...\"` or `hash = \"...\"`")
        );
    }
    let key = match (key, &action) {
        (Some(key), _) => key,
        (None, Some(action)) => action.clone(),
        (None, None) => return Err(meta.error("a dependency by `hash` needs a `key` (its slot)")),
    };
    Ok(DependencyOption {
        key,
        action,
        hash,
        optional,
    })
}

/// Options of `#[arg(...)]` on a parameter.
#[derive(Default)]
struct ArgOptions {
    default: Option<Expr>,
    description: Option<LitStr>,
    label: Option<LitStr>,
}

/// A parameter that is a port.
struct PortParam {
    key: String,
    ty: Type,
    options: ArgOptions,
}

enum Param {
    /// A port.
    Port(Box<PortParam>),
    /// `Context` by value.
    ContextValue,
    /// `&Context`.
    ContextRef,
}

/// The shape of the return type.
struct Output {
    /// `Result<T, E>`: an `Err` fails the task.
    fallible: bool,
    /// `impl Iterator<Item = T>`: a GENERATOR.
    generator: bool,
    /// The items are `Result<T, E>`: an `Err` item fails the task.
    item_fallible: bool,
    /// The types of the return ports.
    ports: Vec<Type>,
    /// Whether the value is a tuple (destructured into the ports).
    tuple: bool,
}

/// Expands `#[register]` on `function`.
pub(crate) fn expand(options: Options, mut function: ItemFn) -> syn::Result<TokenStream> {
    check_signature(&function)?;
    let params = take_params(&mut function)?;
    let output = analyze_output(&function.sig.output)?;

    let ident = &function.sig.ident;
    let key = ident.unraw().to_string();
    let param_names: Vec<String> = params
        .iter()
        .filter_map(|param| match param {
            Param::Port(port) => Some(port.key.clone()),
            _ => None,
        })
        .collect();
    let docs = docs::parse(&docs::doc_lines(&function.attrs), &param_names);
    let name = options
        .name
        .unwrap_or_else(|| LitStr::new(&docs::title_case(&key), ident.span()));
    let version = options
        .version
        .unwrap_or_else(|| LitStr::new("1", Span::call_site()));
    let description = docs.description.as_deref().unwrap_or("No Description");

    let sdk = quote!(::rekuest_guest::__private);
    let dependencies = options.dependencies.iter().map(|dependency| {
        let DependencyOption {
            key,
            action,
            hash,
            optional,
        } = dependency;
        let action = option_string(action.as_ref());
        let hash = option_string(hash.as_ref());
        quote!(#sdk::Dependency {
            key: ::std::string::String::from(#key),
            action: #action,
            hash: #hash,
            optional: #optional,
        })
    });
    let kind = if output.generator {
        quote!(#sdk::ActionKind::Generator)
    } else {
        quote!(#sdk::ActionKind::Function)
    };

    // One `port_fns::<T>()` per arg and return, shared by the definition and the decoding
    // or encoding: the one place that requires `T: Port`, so a bad type is reported once.
    let param_fns =
        |index: usize| format_ident!("__rekuest_param{index}", span = Span::mixed_site());
    let port_consts = params
        .iter()
        .enumerate()
        .filter_map(|(index, param)| match param {
            Param::Port(port) => Some((param_fns(index), &port.ty)),
            _ => None,
        })
        .chain(
            output
                .ports
                .iter()
                .enumerate()
                .map(|(index, ty)| (return_fns(index), ty)),
        )
        .map(|(name, ty)| {
            quote_spanned!(ty.span()=>
                const #name: ::rekuest_guest::__private::PortFns<#ty> =
                    ::rekuest_guest::__private::port_fns::<#ty>();
            )
        })
        .collect::<Vec<_>>();
    let arg_ports = params.iter().enumerate().filter_map(|(index, param)| {
        let Param::Port(port) = param else {
            return None;
        };
        let PortParam { key, ty, options } = &**port;
        let fns = param_fns(index);
        let description = options
            .description
            .as_ref()
            .map(LitStr::value)
            .or_else(|| docs.args.get(key).cloned());
        let description = option_str(description.as_deref());
        let label = option_str(options.label.as_ref().map(LitStr::value).as_deref());
        let default = default_value(options.default.as_ref());
        Some(quote_spanned!(ty.span()=>
            (#fns.port)(#key, #description, #label, #default)
        ))
    });
    let return_ports = output.ports.iter().enumerate().map(|(index, ty)| {
        let key = format!("return{index}");
        let description = option_str(docs.returns.get(index).map(String::as_str));
        let fns = return_fns(index);
        quote_spanned!(ty.span()=>
            (#fns.port)(
                #key,
                #description,
                ::core::option::Option::None,
                ::core::option::Option::None,
            )
        )
    });

    let default_checks = params.iter().filter_map(|param| {
        let Param::Port(port) = param else {
            return None;
        };
        default_check(&port.key, &port.ty, port.options.default.as_ref()?)
    });

    let args_ident = Ident::new("__rekuest_args", Span::mixed_site());
    let ctx_ident = Ident::new("__rekuest_ctx", Span::mixed_site());
    let has_ports = !param_names.is_empty();
    let mut decode = Vec::new();
    let mut call_args = Vec::new();
    for (index, param) in params.iter().enumerate() {
        match param {
            Param::Port(port) => {
                let PortParam { key, ty, options } = &**port;
                let fns = param_fns(index);
                let value = format_ident!("__rekuest_arg{index}", span = Span::mixed_site());
                let default = default_value(options.default.as_ref());
                decode.push(quote_spanned!(ty.span()=>
                    let #value: #ty = (#fns.arg)(&mut #args_ident, #key, #default)?;
                ));
                call_args.push(quote!(#value));
            }
            Param::ContextValue => call_args.push(quote!(::core::clone::Clone::clone(#ctx_ident))),
            Param::ContextRef => call_args.push(quote!(#ctx_ident)),
        }
    }
    let args_param = if has_ports {
        quote!(mut #args_ident)
    } else {
        quote!(_)
    };

    let value = Ident::new("__rekuest_value", Span::mixed_site());
    let returns = Ident::new("__rekuest_returns", Span::mixed_site());
    let collect_returns = collect_returns(&output, &value, &returns);
    let call = quote!(#ident(#(#call_args),*));
    let check =
        |fallible: bool| fallible.then(|| quote!(let #value = #value.map_err(#sdk::failed)?;));
    let check_value = check(output.fallible);
    let body = if output.generator {
        let check_item = check(output.item_fallible);
        quote! {
            let #value = #call;
            #check_value
            #sdk::yield_each(#value, #ctx_ident, |#value| {
                #check_item
                #collect_returns
                ::core::result::Result::Ok(#returns)
            })
        }
    } else {
        quote! {
            let #value = #call;
            #check_value
            #collect_returns
            #returns.send(#ctx_ident);
            ::core::result::Result::Ok(())
        }
    };

    let locks = &options.locks;
    let states = options
        .states
        .iter()
        .map(|state| quote! { #sdk::state_schema::<#state>() });
    let vis = &function.vis;
    // The function's twin in the type namespace (a braced struct takes no value name, so it
    // sits beside the function): `export_actions!` finds the action through it, and it
    // checks that `export_actions!` lists the function.
    Ok(quote! {
        #function

        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        const _: () = #sdk::exported::<#ident>();

        impl #sdk::Registered for #ident {
            const ACTION: #sdk::Action = {
                #(#default_checks)*
                #(#port_consts)*

                fn __rekuest_definition() -> #sdk::Definition {
                    #sdk::Definition {
                        key: ::std::string::String::from(#key),
                        version: ::std::string::String::from(#version),
                        name: ::std::string::String::from(#name),
                        description: ::core::option::Option::Some(
                            ::std::string::String::from(#description),
                        ),
                        kind: #kind,
                        stateful: false,
                        pure: false,
                        idempotent: false,
                        collections: ::std::vec::Vec::new(),
                        dependencies: ::std::vec![#(#dependencies),*],
                        locks: ::std::vec![#(::std::string::String::from(#locks)),*],
                        states: ::std::vec![#(#states),*],
                        args: ::std::vec![#(#arg_ports),*],
                        returns: ::std::vec![#(#return_ports),*],
                    }
                }

                fn __rekuest_run(
                    #args_param: #sdk::Map<::std::string::String, #sdk::Value>,
                    #ctx_ident: &#sdk::Context,
                ) -> ::core::result::Result<(), #sdk::RunError> {
                    #(#decode)*
                    #body
                }

                #sdk::Action {
                    key: #key,
                    definition: __rekuest_definition,
                    run: __rekuest_run,
                }
            };
        }
    })
}

/// `Some(String::from("text"))` or `None`, in generated code.
fn option_string(text: Option<&LitStr>) -> TokenStream {
    match text {
        Some(text) => quote!(::core::option::Option::Some(::std::string::String::from(#text))),
        None => quote!(::core::option::Option::None),
    }
}

/// `Some("text")` or `None`.
fn option_str(text: Option<&str>) -> TokenStream {
    match text {
        Some(text) => quote!(::core::option::Option::Some(#text)),
        None => quote!(::core::option::Option::None),
    }
}

/// A compile-time check that a literal `#[arg(default = ...)]` fits the port's type
/// (`Port::DEFAULT_KINDS`); `None` for a default that is not a literal.
fn default_check(key: &str, ty: &Type, default: &Expr) -> Option<TokenStream> {
    let (kind, what) = literal_kind(default)?;
    let kind = Ident::new(kind, Span::call_site());
    let ty_text = compact_tokens(&quote!(#ty).to_string());
    let default_text = compact_tokens(&quote!(#default).to_string());
    // `assert!` takes a format string: braces are doubled.
    let message = format!(
        "`#[arg(default = {default_text})]` does not fit `{key}: {ty_text}`: \
         that port takes no {what} default"
    )
    .replace('{', "{{")
    .replace('}', "}}");
    Some(quote_spanned!(default.span()=>
        const _: () = ::core::assert!(
            <#ty as ::rekuest_guest::Port>::DEFAULT_KINDS
                & ::rekuest_guest::__private::default_kinds::#kind
                != 0,
            #message
        );
    ))
}

/// The kind of a literal default (a `default_kinds` constant) and its name in messages.
fn literal_kind(default: &Expr) -> Option<(&'static str, &'static str)> {
    match default {
        Expr::Lit(literal) => match &literal.lit {
            syn::Lit::Int(_) => Some(("INT", "integer")),
            syn::Lit::Float(_) => Some(("FLOAT", "float")),
            syn::Lit::Str(_) => Some(("STRING", "string")),
            syn::Lit::Bool(_) => Some(("BOOL", "boolean")),
            _ => None,
        },
        Expr::Unary(unary) if matches!(unary.op, syn::UnOp::Neg(_)) => literal_kind(&unary.expr),
        Expr::Path(path) if path.path.is_ident("null") => Some(("NULL", "null")),
        Expr::Array(_) => Some(("LIST", "list")),
        Expr::Group(group) => literal_kind(&group.expr),
        Expr::Paren(paren) => literal_kind(&paren.expr),
        _ => None,
    }
}

/// Token text without the spaces `to_string` puts between tokens: `Vec<i64>`, `-1`.
fn compact_tokens(text: &str) -> String {
    text.replace(" < ", "<")
        .replace("< ", "<")
        .replace(" <", "<")
        .replace(" >", ">")
        .replace(" :: ", "::")
        .replace(" ,", ",")
        .replace("- ", "-")
}

/// `Some(json!(default))` or `None`.
fn default_value(default: Option<&Expr>) -> TokenStream {
    match default {
        Some(default) => quote_spanned!(default.span()=>
            ::core::option::Option::Some(::rekuest_guest::__private::serde_json::json!(#default))
        ),
        None => quote!(::core::option::Option::None),
    }
}

/// The `PortFns` constant of return `index`.
fn return_fns(index: usize) -> Ident {
    format_ident!("__rekuest_ret{index}", span = Span::mixed_site())
}

/// Binds `returns` to the `Returns` of `value`, one port per element.
fn collect_returns(output: &Output, value: &Ident, returns: &Ident) -> TokenStream {
    let sdk = quote!(::rekuest_guest::__private);
    let elements: Vec<Ident> = (0..output.ports.len())
        .map(|index| format_ident!("__rekuest_return{index}", span = Span::mixed_site()))
        .collect();
    let pattern = if output.tuple {
        quote!((#(#elements,)*))
    } else if let [single] = elements.as_slice() {
        quote!(#single)
    } else {
        quote!(())
    };
    let declare = if elements.is_empty() {
        quote!(let #returns = #sdk::Returns::new();)
    } else {
        quote!(let mut #returns = #sdk::Returns::new();)
    };
    let adds = elements
        .iter()
        .zip(&output.ports)
        .enumerate()
        .map(|(index, (element, ty))| {
            let fns = return_fns(index);
            quote_spanned!(ty.span()=> (#fns.add)(&mut #returns, #element)?;)
        });
    quote! {
        let #pattern = #value;
        #declare
        #(#adds)*
    }
}

fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new(token.span(), "actions cannot be async"));
    }
    if let Some(token) = &sig.unsafety {
        return Err(syn::Error::new(token.span(), "actions cannot be unsafe"));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "actions cannot be variadic",
        ));
    }
    if let Some(param) = sig
        .generics
        .params
        .iter()
        .find(|param| !matches!(param, syn::GenericParam::Lifetime(_)))
    {
        return Err(syn::Error::new(
            param.span(),
            "actions cannot be generic: their ports must be known types",
        ));
    }
    Ok(())
}

/// Classifies the parameters and strips their `#[arg(...)]` attributes.
fn take_params(function: &mut ItemFn) -> syn::Result<Vec<Param>> {
    let mut params = Vec::new();
    for input in &mut function.sig.inputs {
        let typed = match input {
            FnArg::Typed(typed) => typed,
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new(
                    receiver.span(),
                    "`#[register]` goes on a free function, not a method: move the action out of \
                     the `impl` block (it cannot take `self`)",
                ));
            }
        };
        let mut options = ArgOptions::default();
        let mut error: Option<syn::Error> = None;
        typed.attrs.retain(|attr| {
            if !attr.path().is_ident("arg") {
                return true;
            }
            if let Err(parse_error) = parse_arg_options(attr, &mut options) {
                match &mut error {
                    Some(error) => error.combine(parse_error),
                    None => error = Some(parse_error),
                }
            }
            false
        });
        if let Some(error) = error {
            return Err(error);
        }
        match context_param(&typed.ty)? {
            Some(param) => {
                if options.default.is_some()
                    || options.description.is_some()
                    || options.label.is_some()
                {
                    return Err(syn::Error::new(
                        typed.span(),
                        "`#[arg]` does not apply to the Context parameter",
                    ));
                }
                params.push(param);
            }
            None => {
                let Pat::Ident(pat) = &*typed.pat else {
                    return Err(syn::Error::new(
                        typed.pat.span(),
                        "action parameters need plain names: they become port keys",
                    ));
                };
                if let Type::Reference(reference) = &*typed.ty {
                    return Err(syn::Error::new(
                        reference.span(),
                        "action parameters are owned values (String, Vec<T>, ...), not references",
                    ));
                }
                if let Type::ImplTrait(ty) = &*typed.ty {
                    return Err(syn::Error::new(
                        ty.span(),
                        "actions cannot be generic: their ports must be known types",
                    ));
                }
                params.push(Param::Port(Box::new(PortParam {
                    key: pat.ident.unraw().to_string(),
                    ty: (*typed.ty).clone(),
                    options,
                })));
            }
        }
    }
    Ok(params)
}

fn parse_arg_options(attr: &syn::Attribute, options: &mut ArgOptions) -> syn::Result<()> {
    attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("default") {
            options.default = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("description") {
            options.description = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("label") {
            options.label = Some(meta.value()?.parse()?);
        } else {
            return Err(meta.error(
                "unknown option; expected `default = ...`, `description = \"...\"` or `label = \"...\"`",
            ));
        }
        Ok(())
    })
}

/// Whether `ty` is `Context` or `&Context`.
fn context_param(ty: &Type) -> syn::Result<Option<Param>> {
    match ty {
        Type::Reference(reference) if is_context(&reference.elem) => {
            if let Some(token) = reference.mutability {
                return Err(syn::Error::new(
                    token.span(),
                    "take the Context by value or as `&Context`",
                ));
            }
            Ok(Some(Param::ContextRef))
        }
        ty if is_context(ty) => Ok(Some(Param::ContextValue)),
        _ => Ok(None),
    }
}

fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Context" && segment.arguments.is_none()),
        Type::Paren(inner) => is_context(&inner.elem),
        Type::Group(inner) => is_context(&inner.elem),
        _ => false,
    }
}

fn analyze_output(output: &ReturnType) -> syn::Result<Output> {
    let ty = match output {
        ReturnType::Default => {
            return Ok(Output {
                fallible: false,
                generator: false,
                item_fallible: false,
                ports: Vec::new(),
                tuple: false,
            });
        }
        ReturnType::Type(_, ty) => unwrap_type(ty),
    };
    let (fallible, ty) = match result_ok_type(ty) {
        Some(ok) => (true, ok),
        None => (false, ty),
    };
    let (generator, item_fallible, ty) = match iterator_item(ty)? {
        Some(item) => match result_ok_type(item) {
            Some(ok) => (true, true, ok),
            None => (true, false, item),
        },
        None => (false, false, ty),
    };
    let (tuple, ports) = match ty {
        Type::Tuple(tuple) if tuple.elems.is_empty() => (false, Vec::new()),
        Type::Tuple(tuple) => (true, tuple.elems.iter().cloned().collect()),
        ty => (false, vec![ty.clone()]),
    };
    Ok(Output {
        fallible,
        generator,
        item_fallible,
        ports,
        tuple,
    })
}

fn unwrap_type(ty: &Type) -> &Type {
    match ty {
        Type::Paren(inner) => unwrap_type(&inner.elem),
        Type::Group(inner) => unwrap_type(&inner.elem),
        ty => ty,
    }
}

/// `T` of `Result<T, E>` (or of a one-argument `Result<T>` alias).
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = unwrap_type(ty) else {
        return None;
    };
    let segment = path.path.segments.last()?;
    if segment.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    match arguments.args.first()? {
        GenericArgument::Type(ok) => Some(unwrap_type(ok)),
        _ => None,
    }
}

/// `T` of `impl Iterator<Item = T>`.
fn iterator_item(ty: &Type) -> syn::Result<Option<&Type>> {
    let Type::ImplTrait(bounds) = ty else {
        return Ok(None);
    };
    for bound in &bounds.bounds {
        let TypeParamBound::Trait(bound) = bound else {
            continue;
        };
        let Some(segment) = bound.path.segments.last() else {
            continue;
        };
        if segment.ident != "Iterator" {
            continue;
        }
        if let PathArguments::AngleBracketed(arguments) = &segment.arguments {
            for argument in &arguments.args {
                if let GenericArgument::AssocType(assoc) = argument
                    && assoc.ident == "Item"
                {
                    return Ok(Some(unwrap_type(&assoc.ty)));
                }
            }
        }
    }
    Err(syn::Error::new(
        ty.span(),
        "return `impl Iterator<Item = T>` for a generator, or a concrete type",
    ))
}
