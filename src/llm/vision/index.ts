// LLaVA-style image-to-text: the CLIP vision encoder and projector (clip.ts), CLIP image
// preprocessing from PNG/JPEG (image.ts), and the decoder step with image rows spliced in (llava.ts).
export { type ClipVisionConfig, type LlavaVisionOptions, ClipVisionModel, LlavaProjector, LlavaImageEncoder, clipVisionConfigFromHf, quickGelu } from './clip.js';
export { type RgbImage, type ClipPreprocessOptions, ImageError, decodeImage, readImage, resizeBicubic, clipPreprocess, loadClipImage, CLIP_MEAN, CLIP_STD } from './image.js';
export { type LlavaConfig, type LlavaLoadReport, type LoadLlavaOptions, Llava, LlavaDecoder, loadLlava, llavaConfigFromHf } from './llava.js';
