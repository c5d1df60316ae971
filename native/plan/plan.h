// The native plan executor's N-API surface: createPlan, runPlan, runPlanAsync, planProfile.
#pragma once
#include <napi.h>

namespace inferjit {
void registerPlan(Napi::Env env, Napi::Object exports);
}  // namespace inferjit
