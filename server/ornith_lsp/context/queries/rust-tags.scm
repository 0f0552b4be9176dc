; Tags for Rust: captures as in python-tags.scm.  Functions inside an impl or
; a trait are methods; structs, enums, traits, impls and modules enclose code.

(impl_item body: (declaration_list (function_item name: (identifier) @name) @definition.method))

(trait_item body: (declaration_list (function_item name: (identifier) @name) @definition.method))

(function_item name: (identifier) @name) @definition.function

(struct_item name: (type_identifier) @name) @definition.class

(enum_item name: (type_identifier) @name) @definition.class

(trait_item name: (type_identifier) @name) @definition.class

(impl_item type: (type_identifier) @name) @definition.class

(mod_item name: (identifier) @name) @definition.class

(const_item name: (identifier) @name) @definition.constant

(static_item name: (identifier) @name) @definition.constant

(call_expression
  function: [
    (identifier) @name
    (field_expression field: (field_identifier) @name)
    (scoped_identifier name: (identifier) @name)
  ]) @reference.call

(macro_invocation macro: (identifier) @name) @reference.call

(type_identifier) @name @reference.type

(arguments (identifier) @name @reference.name)

(token_tree (identifier) @name @reference.name)
