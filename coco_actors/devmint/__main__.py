from coco_actors.devmint import main

raise SystemExit(main())
