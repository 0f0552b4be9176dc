; Tags for Python: what is defined where, and which names each file uses.
; A definition node matched by several patterns takes the kind of the pattern
; written first, so the specific patterns (methods) come before the general.
; Captures: @name is the identifier; @definition.KIND / @reference.KIND the node.

(class_definition
  body: (block
    (function_definition name: (identifier) @name) @definition.method))

(class_definition
  body: (block
    (decorated_definition
      definition: (function_definition name: (identifier) @name) @definition.method)))

(class_definition name: (identifier) @name) @definition.class

(function_definition name: (identifier) @name) @definition.function

(module
  (expression_statement
    (assignment left: (identifier) @name) @definition.constant))

(call
  function: [
    (identifier) @name
    (attribute attribute: (identifier) @name)
  ]) @reference.call

(class_definition
  superclasses: (argument_list
    [(identifier) @name (attribute attribute: (identifier) @name)] @reference.class))

(type (identifier) @name @reference.type)

(generic_type (identifier) @name @reference.type)

(decorator [(identifier) @name (attribute attribute: (identifier) @name)] @reference.decorator)

(argument_list (identifier) @name @reference.name)

(import_from_statement
  name: [
    (dotted_name (identifier) @name)
    (aliased_import name: (dotted_name (identifier) @name))
  ] @reference.import)
