// whisper.cpp on its own, for comparison with verbatim: whisper_full() with whisper.cpp's own
// default parameters (beam 5, flash attention on, language en), on raw f32le 16 kHz mono
// samples, linked against the same libwhisper.a that verbatim's build made. Prints the segments
// on stdout and whisper.cpp's timings (encoder, decoder, sampling) on stderr. In bash:
//
//   O=$(ls -td target/release/build/whisper-rs-sys-*/out | head -1); L=$O/lib
//   gcc -O2 -I$O/include -I$O/whisper.cpp/ggml/include bench/whisper_defaults.c -o /tmp/wd $L/libwhisper.a $L/libggml.a $L/libggml-cpu.a $L/libggml-base.a -lstdc++ -fopenmp -lm -lpthread
//   ffmpeg -v error -i ../shared/audio/long_ls_2609_3080_concat.flac -f f32le -ac 1 -ar 16000 /tmp/long.f32
//   /usr/bin/time -f "%e s %M KB" /tmp/wd ../shared/models/ggml-tiny.en.bin /tmp/long.f32 2
//
// Arguments: MODEL PCM THREADS [BEAM=5] [FLASH_ATTN=1] [TOKEN_TIMESTAMPS=0].
#include "whisper.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: mini MODEL PCM.f32 THREADS [beam] [fa] [tokts]\n"); return 1; }
    int beam = argc > 4 ? atoi(argv[4]) : 5;
    int fa = argc > 5 ? atoi(argv[5]) : 1;
    int tokts = argc > 6 ? atoi(argv[6]) : 0;
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    fseek(f, 0, SEEK_END); long n = ftell(f) / 4; fseek(f, 0, SEEK_SET);
    float *pcm = malloc(n * 4); fread(pcm, 4, n, f); fclose(f);
    struct whisper_context_params cp = whisper_context_default_params();
    cp.flash_attn = fa; cp.use_gpu = 0;
    struct whisper_context *ctx = whisper_init_from_file_with_params(argv[1], cp);
    if (!ctx) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    struct whisper_full_params p = whisper_full_default_params(beam > 1 ? WHISPER_SAMPLING_BEAM_SEARCH : WHISPER_SAMPLING_GREEDY);
    p.n_threads = atoi(argv[3]); p.beam_search.beam_size = beam; p.greedy.best_of = 5;
    p.print_progress = 0; p.print_realtime = 0; p.token_timestamps = tokts; p.language = "en";
    if (whisper_full(ctx, p, pcm, n) != 0) { fprintf(stderr, "failed\n"); return 1; }
    int ns = whisper_full_n_segments(ctx);
    for (int i = 0; i < ns; i++) printf("%s\n", whisper_full_get_segment_text(ctx, i));
    whisper_print_timings(ctx);
    whisper_free(ctx); return 0;
}
