# Builds the native CPU backend (native/) with node-gyp. The target architecture comes from
# INFERJIT_NATIVE_ARCH (default "native": optimize for the installing machine; "x86-64-v3" gives a
# portable AVX2+FMA build). scripts/build-native.mjs runs this during `npm install`.
{
  "variables": {
    "inferjit_arch%": "<!(node -p \"process.env.INFERJIT_NATIVE_ARCH || 'native'\")"
  },
  "targets": [
    {
      "target_name": "inferjit_native",
      "sources": [
        "native/addon.cc",
        "native/threadpool.cc",
        "native/gemm/gemm.cc",
        "native/gemm/gemm_bf16.cc",
        "native/gemm/gemm_amx.cc",
        "native/gemm/gemm_bf16_napi.cc",
        "native/attention/attention_bf16.cc",
        "native/attention/attention.cc",
        "native/ops/elementwise.cc",
        "native/ops/norm.cc",
        "native/ops/movement.cc",
        "native/ops/conv.cc",
        "native/ops/conv_direct.cc",
        "native/ops/conv_winograd.cc",
        "native/ops/hash.cc",
        "native/quant/qmatmul.cc",
        "native/quant/kquants.cc",
        "native/quant/quant_napi.cc",
        "native/quant/fake_quant.cc",
        "native/quant/gptq.cc",
        "native/quant/w8a8_napi.cc",
        "native/llm/paged_attention.cc",
        "native/llm/paged_napi.cc",
        "native/plan/control_flow.cc",
        "native/llm/moe.cc",
        "native/plan/kernels.cc",
        "native/plan/llm_kernels.cc",
        "native/plan/plan.cc",
        "native/plan/qgemm.cc",
        "native/quant/w8a8.cc",
        "native/plan/w8a8_gemm.cc"
      ],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "INFERJIT_ARCH=\"<(inferjit_arch)\""],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-march=<(inferjit_arch)", "-fno-math-errno", "-fno-trapping-math", "-fvisibility=hidden", "-Wall", "-Wno-unused-function", "-Wno-maybe-uninitialized", "-Wno-uninitialized"],
      "ldflags": ["-pthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3", "-march=<(inferjit_arch)"]
      }
    }
  ]
}
