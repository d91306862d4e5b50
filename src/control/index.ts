export { createControlService } from "./control-service.js";
