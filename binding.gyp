{
  "targets": [
    {
      "target_name": "vhdx_native",
      "sources": ["native/vhdx_native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
