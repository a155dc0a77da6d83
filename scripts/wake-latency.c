// Pipe ping-pong between two processes: one-way wake-up latency (round trip / 2), 2000 rounds.
// usage: gcc -O2 scripts/wake-latency.c -o /tmp/wl && /tmp/wl GAP_US [cross]   (cross: the two on CPUs 0 and 1)
// docs/benchmarks.md, "End-to-end lag": the cost of one hand-off between processes on this VM.
#define _GNU_SOURCE
// Pipe ping-pong between two processes: median one-way wake-up latency (round trip / 2).
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){int n=2000,gap_us=argc>1?atoi(argv[1]):0;int a[2],b[2];pipe(a);pipe(b);char c='x';
 int cross=argc>2; cpu_set_t s; if(cross){CPU_ZERO(&s);CPU_SET(0,&s);sched_setaffinity(0,sizeof s,&s);}
 if(fork()==0){if(cross){CPU_ZERO(&s);CPU_SET(1,&s);sched_setaffinity(0,sizeof s,&s);}for(int i=0;i<n;i++){read(a[0],&c,1);write(b[1],&c,1);}_exit(0);}
 double *d=malloc(n*sizeof(double));
 for(int i=0;i<n;i++){if(gap_us)usleep(gap_us);double t=now();write(a[1],&c,1);read(b[0],&c,1);d[i]=(now()-t)/2;}
 qsort(d,n,sizeof(double),cmp);printf("gap %d us: one-way wake p50 %.0f us p90 %.0f us p99 %.0f us\n",gap_us,d[n/2],d[n*9/10],d[n*99/100]);}
