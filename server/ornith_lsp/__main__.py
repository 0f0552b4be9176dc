from ornith_lsp.cli import main

raise SystemExit(main())
