from devtools.devmint import main

raise SystemExit(main())
