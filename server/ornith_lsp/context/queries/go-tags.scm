; Tags for Go: captures as in python-tags.scm.  A type is a "class": its
; methods are declared apart from it, as methods.

(method_declaration name: (field_identifier) @name) @definition.method

(function_declaration name: (identifier) @name) @definition.function

(type_declaration (type_spec name: (type_identifier) @name) @definition.class)

(source_file (const_declaration (const_spec name: (identifier) @name) @definition.constant))

(source_file (var_declaration (var_spec name: (identifier) @name) @definition.constant))

(call_expression
  function: [
    (identifier) @name
    (selector_expression field: (field_identifier) @name)
  ]) @reference.call

(type_identifier) @name @reference.type

(argument_list (identifier) @name @reference.name)
