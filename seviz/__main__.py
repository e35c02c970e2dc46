from seviz.cli import main

raise SystemExit(main())
