; Tags for TypeScript and TSX: captures as in python-tags.scm.

(class_declaration
  body: (class_body (method_definition name: (property_identifier) @name) @definition.method))

(abstract_class_declaration
  body: (class_body (method_definition name: (property_identifier) @name) @definition.method))

(class_declaration name: (type_identifier) @name) @definition.class

(abstract_class_declaration name: (type_identifier) @name) @definition.class

(interface_declaration name: (type_identifier) @name) @definition.class

(type_alias_declaration name: (type_identifier) @name) @definition.class

(enum_declaration name: (identifier) @name) @definition.class

(function_declaration name: (identifier) @name) @definition.function

(generator_function_declaration name: (identifier) @name) @definition.function

(variable_declarator
  name: (identifier) @name
  value: [(arrow_function) (function_expression)]) @definition.function

(program (lexical_declaration (variable_declarator name: (identifier) @name) @definition.constant))

(program (export_statement (lexical_declaration (variable_declarator name: (identifier) @name) @definition.constant)))

; A test (it/test/describe with a callback) is a function named by its title.
(call_expression
  function: [(identifier) @_runner (member_expression object: (identifier) @_runner)]
  arguments: (arguments . (string (string_fragment) @name) . [(arrow_function) (function_expression)])
  (#match? @_runner "^(it|test|describe|suite|context|bench)$")) @definition.function

(call_expression
  function: [
    (identifier) @name
    (member_expression property: (property_identifier) @name)
  ]) @reference.call

(new_expression constructor: (identifier) @name) @reference.class

(type_annotation (type_identifier) @name @reference.type)

(import_specifier name: (identifier) @name) @reference.import

(arguments (identifier) @name @reference.name)
