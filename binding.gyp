{
  "target_defaults": {
    "cflags": ["-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"],
    "cflags_c": ["-std=c11"]
  },
  "targets": [
    {
      "target_name": "vjail",
      "sources": ["native/addon.c", "native/supervisor.c", "native/caller.c", "native/incaller.c"],
      "libraries": ["-lpthread"]
    },
    {
      "target_name": "vjail-init",
      "type": "executable",
      "sources": ["native/vjail-init.c"],
      "ldflags": ["-static"]
    }
  ]
}
