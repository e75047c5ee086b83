{
  "target_defaults": {
    "cflags": ["-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"],
    "cflags_c": ["-std=c11"]
  },
  "targets": [
    {
      "target_name": "vjail",
      "sources": ["native/addon.c", "native/napi_util.c", "native/supervisor.c", "native/openfast.c", "native/keepawake.c", "native/idcache.c", "native/advicewatch.c", "native/supervisor_napi.c", "native/caller.c", "native/incaller.c", "native/ptrace.c", "native/features.c", "native/shimcalls.c", "native/cpu.c", "native/pagecopy.c", "native/predump.c", "native/lazypages.c", "native/sha256pair.c", "native/chunkhash.c", "native/fdio.c", "native/guard.c", "native/ipcns.c", "native/sockdiag.c", "native/resident.c", "native/spawn.c", "native/vfork_clone.c"],
      "libraries": ["-lpthread"]
    },
    {
      "target_name": "vjail-init",
      "type": "executable",
      "sources": ["native/vjail-init.c", "native/lockdown.c", "native/timens.c", "native/setup_plan.c", "native/userns.c"],
      "ldflags": ["-static"]
    },
    {
      "target_name": "vjail-self-checkpoint",
      "type": "executable",
      "sources": ["native/self-checkpoint.c"],
      "ldflags": ["-static"]
    },
    {
      "target_name": "vjail-oci-setup",
      "type": "executable",
      "sources": ["native/vjail-oci-setup.c", "native/setup_plan.c", "native/userns.c"],
      "ldflags": ["-static"]
    },
    {
      "target_name": "vjail-run",
      "type": "executable",
      "sources": ["native/vjail-run.c"],
      "ldflags": ["-static"]
    },
    {
      "target_name": "vjail-guard",
      "type": "executable",
      "sources": ["native/vjail-guard.c"],
      "ldflags": ["-static"]
    },
    {
      "target_name": "vjail-restorer",
      "type": "executable",
      "sources": ["native/restorer/restorer.c"],
      "cflags": ["-ffreestanding", "-fno-stack-protector", "-fno-pie", "-fno-asynchronous-unwind-tables", "-fno-jump-tables"],
      "ldflags": ["-static", "-nostdlib", "-no-pie", "-Wl,-Ttext-segment=0x7e5a00000000", "-Wl,--build-id=none"]
    }
  ]
}
