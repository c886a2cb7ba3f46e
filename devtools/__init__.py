"""Development tools that are not part of the installed wallet: the dev mint harness
(``devtools.devmint``) and the main job (``devtools.demo``)."""
