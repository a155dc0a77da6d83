#include <bpf/libbpf.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
  struct bpf_object *o = bpf_object__open_file(argv[1], NULL);
  if (!o || bpf_object__load(o)) { fprintf(stderr, "load failed\n"); return 1; }
  struct bpf_program *p;
  bpf_object__for_each_program(p, o) { if (!bpf_program__attach(p)) { fprintf(stderr, "attach failed\n"); return 1; } }
  fprintf(stderr, "attached\n"); pause(); return 0;
}
